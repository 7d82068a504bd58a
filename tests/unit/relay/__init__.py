"""Unit tests of the relay side (no Kafka)."""
