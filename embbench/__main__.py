from embbench.cli import main

main()
