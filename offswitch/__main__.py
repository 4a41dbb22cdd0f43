from offswitch.cli import main

main()
