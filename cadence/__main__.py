from cadence.cli.app import main

main()
