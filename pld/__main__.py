from pld.cli import main

main()
