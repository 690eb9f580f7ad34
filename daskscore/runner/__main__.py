"""``python -m daskscore.runner FD PARENT_PID``: the runner process's entry point."""

from .process import main

if __name__ == "__main__":
    main()
