"""The Gradio web app (Image, Video and Webcam tabs) over the same pipeline as the command line.

The page is :mod:`app.web.ui`, the work behind it :mod:`app.web.jobs` and :mod:`app.web.live`, the
settings and the model cache :mod:`app.web.models`; ``animalpose serve`` (:mod:`app.cli.serve`) starts
it. Gradio is imported by :func:`build_app`, not by this package.
"""

from __future__ import annotations

#: The port ``animalpose serve`` listens on unless told otherwise.
DEFAULT_PORT = 7860


def build_app(settings=None, model_factory=None, can_download=None):
    """The Gradio page (see :func:`app.web.ui.build_app`); ``settings`` default to :class:`WebSettings`'s."""
    from app.web.models import WebSettings
    from app.web.ui import build_app as build

    return build(settings or WebSettings(), model_factory, can_download)


def launch(demo, host: str = "127.0.0.1", port: int | None = DEFAULT_PORT, share: bool = False,
           block: bool = True, quiet: bool = False):
    """Serve a page from :func:`build_app` (see :func:`app.web.ui.launch`)."""
    from app.web.ui import launch as serve

    return serve(demo, host=host, port=port, share=share, block=block, quiet=quiet)
