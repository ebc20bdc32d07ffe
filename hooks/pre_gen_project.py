"""Before cookiecutter writes anything: refuse answers the generated project could not carry.

The slug becomes the distribution name, the image name and the directory; the name, the
description and the author go into one-line places (a README title, TOML strings). A bad
answer stops here, with the reason, rather than as a broken project later.

Cookiecutter renders this file with Jinja before running it: the answers arrive as JSON in
the string at the bottom, and nothing else here may look like a Jinja tag.
"""

from __future__ import annotations

import json
import re
import sys
from typing import Any

_SLUG = re.compile(r"[a-z][a-z0-9]*(?:-[a-z0-9]+)*\Z")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+\Z")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def problems(answers: dict[str, Any]) -> list[str]:
    found = []
    for key in ("project_name", "description", "author_name"):
        value = answers[key]
        if not value.strip():
            found.append(f"{key}: must not be empty")
        elif _CONTROL.search(value):
            found.append(f"{key}: must be one line, without control characters")
    if not _SLUG.match(answers["project_slug"]):
        found.append(
            f"project_slug: {answers['project_slug']!r} must be lowercase letters and digits in "
            "words joined by single hyphens, starting with a letter (it names the "
            "distribution, the image and the directory)"
        )
    if not _EMAIL.match(answers["author_email"]):
        found.append(f"author_email: {answers['author_email']!r} is not an email address")
    return found


if __name__ == "__main__":
    found = problems(json.loads(r"""{{ cookiecutter | jsonify }}"""))
    for problem in found:
        print(f"cannot generate the project: {problem}", file=sys.stderr)
    sys.exit(1 if found else 0)
