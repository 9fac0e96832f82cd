import io

from service.tools.progress import Progress


class FakeTty(io.StringIO):
    def isatty(self):
        return True


def test_progress_draws_on_a_terminal_and_clears_the_line():
    out = FakeTty()
    p = Progress("eval", total=4, stream=out, min_interval_s=0)
    p.update(1)
    p.update(4)
    p.close()
    text = out.getvalue()
    assert "eval [######------------------] 1/4 25%" in text
    assert "4/4 100%" in text and text.endswith("\r\x1b[K")


def test_progress_is_silent_in_pipes_and_logs():
    out = io.StringIO()
    p = Progress("eval", total=4, stream=out, min_interval_s=0)
    p.update(2)
    p.close()
    assert out.getvalue() == ""


def test_progress_rate_limits_redraws():
    out = FakeTty()
    p = Progress("replay", stream=out, min_interval_s=3600)
    p.update(1)
    p.update(2)
    assert out.getvalue().count("\r") == 1
