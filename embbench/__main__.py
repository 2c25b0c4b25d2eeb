from embbench.cli.app import main

main()
