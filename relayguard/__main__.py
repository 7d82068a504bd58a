from relayguard.roof.cli import main

main(prog_name="relayguard")
