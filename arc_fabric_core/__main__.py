from arc_fabric_core.cli import main

if __name__ == "__main__":
    main()
