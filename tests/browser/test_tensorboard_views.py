"""TensorBoard itself renders the sample texts: strokes for rejected drafts, emphasis for the full model's tokens,
end tokens without stray backslashes (the HTML its text plugin serves to the page)."""

from tests.browser.tensorboard_views import serve, served_text, write_run


def test_tensorboard_serves_the_samples_as_intended(tmp_path):
    write_run(tmp_path / "logs")
    with serve(tmp_path / "logs") as base:
        html = served_text(base, "run/version_0", "val/samples/text_summary")
    assert "s\u0336t\u0336r\u0336u\u0336c\u0336k\u0336" in html  # the legend's struck word, rendered
    assert "<strong>bold</strong>" in html and "<em>italic</em>" in html
    assert "~~" not in html and "\\&lt;" not in html and "&lt;del" not in html and "&lt;s&gt;" not in html
    assert html.count("<hr") == 2  # legend, then one block per sample (2)
