"""A real local Apache Kafka broker for development, demos and tests (jars fetched with Maven).

- fetch.ensure_jars(): download the broker jars once into a per-user cache.
- server.LocalBroker: run a single-node KRaft broker on 127.0.0.1.
- topics.ensure_topics() / standard_topics(): create relayguard's topics explicitly.
- cli.broker: the `relayguard broker` command group.
"""
