"""Entry point for ``python -m simulator``."""

from simulator.app import main

if __name__ == "__main__":
    main()
