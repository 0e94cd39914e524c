from training.cli.app import main

main()
