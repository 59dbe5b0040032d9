from arc_fabric_core.cli.main import main

if __name__ == "__main__":
    main()
