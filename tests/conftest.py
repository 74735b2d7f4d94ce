from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
FIXTURES = SHARED / "quarto-freeze-fixtures"


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


@pytest.fixture
def tmp_project(tmp_path: Path) -> Path:
    """An empty Quarto website project in a temporary folder."""
    write(tmp_path / "_quarto.yml", "project:\n  type: website\n")
    return tmp_path


# A note with one labelled figure, shared by the freeze tests.
FIGURE_NOTE = '''---
title: "Figure"
---

Intro prose.

```{python}
#| label: fig-noise
#| fig-cap: "Noise"
#| fig-alt: "Random points"
import numpy as np
import matplotlib.pyplot as plt
rng = np.random.default_rng(0)
plt.scatter(*rng.normal(size=(2, 50)))
plt.title("noise")
plt.show()
```

Closing prose.
'''
