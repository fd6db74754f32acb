from gateway.ops.cli.main import main

main()
