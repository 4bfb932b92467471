"""A stage run as its own process ends without the interpreter's teardown (errors.exit_now),
and nothing it printed or registered to run at exit is lost; run in-process, it exits as
usual so the caller goes on."""

import subprocess
import sys
import textwrap

import pytest

from digitrec.errors import run_command, started_as

SCRIPT = textwrap.dedent("""
    import atexit, sys
    from pathlib import Path
    from digitrec.errors import DigitrecError, run_command, started_as

    atexit.register(lambda: Path(sys.argv[1]).write_text("exit handler ran"))
    print("buffered, not flushed", end="")

    def action():
        if sys.argv[2] == "fail":
            raise DigitrecError("no such thing")
        return "summary"

    if __name__ == "__main__":
        run_command(action, own_process=started_as(__file__))
""")


@pytest.mark.parametrize(("mode", "code"), [("ok", 0), ("fail", 1)])
def test_a_script_exits_now_with_its_output_and_exit_handlers(tmp_path, mode, code):
    script, marker = tmp_path / "stage.py", tmp_path / "marker"
    script.write_text(SCRIPT)
    done = subprocess.run([sys.executable, str(script), str(marker), mode],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == code
    assert done.stdout.startswith("buffered, not flushed")
    assert ("summary" in done.stdout) == (mode == "ok")
    assert ("error: no such thing" in done.stderr) == (mode == "fail")
    assert marker.read_text() == "exit handler ran"


def test_run_in_process_the_caller_goes_on():
    assert not started_as(__file__)
    with pytest.raises(SystemExit) as exit_:
        run_command(lambda: None, own_process=started_as(__file__))
    assert exit_.value.code == 0
