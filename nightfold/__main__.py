from nightfold.cli.main import main

main()
