"""Helpers shared by the test modules."""
from posekit.cli import main


def run_cli(argv, capsys):
    """Run the ``posekit`` command in-process; return (exit code, stdout, stderr)."""
    try:
        main(argv)
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err
