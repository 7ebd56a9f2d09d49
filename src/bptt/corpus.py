"""A built-in text corpus that needs no download: Python's own documentation topics.

``pydoc_data.topics`` ships with CPython (the text behind ``help("if")`` and friends):
about 465,000 characters of English prose and code. It is joined in sorted topic order,
so the corpus is the same on every run of the same Python version.
"""

from __future__ import annotations


def builtin_text() -> str:
    """The built-in corpus as one string."""
    try:
        from pydoc_data.topics import topics
    except ImportError:  # pragma: no cover - some distributions strip pydoc_data
        raise ValueError("the built-in corpus needs Python's pydoc_data module, which this Python lacks; "
                         "pass a text file instead (--text PATH)") from None
    return "\n\n".join(topics[key] for key in sorted(topics))
