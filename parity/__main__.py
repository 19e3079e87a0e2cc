"""`python -m parity`: the parity suite (`parity.suite.cli`); `python -m parity port …` ports a torch CNN."""

import sys


def main(argv: list[str]) -> int:
    if argv[:1] == ["port"]:
        from parity.port.cli import main as port_main

        return port_main(argv[1:], prog="python -m parity port")
    from parity.suite.cli import main as suite_main

    return suite_main(argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
