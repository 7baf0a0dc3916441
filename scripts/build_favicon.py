"""Draw ``assets/favicon.png``, the app's browser-tab icon: a teacher (the large circle) and a student.

The app ships its icon as a file because a class network may have no internet, and an icon given by
name is fetched from a font CDN by the browser.

    python scripts/build_favicon.py
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw

OUT = Path(__file__).resolve().parent.parent / "assets" / "favicon.png"


def draw(path: Path = OUT) -> Path:
    """Write the 64x64 RGBA icon to ``path``; returns it."""
    image = Image.new("RGBA", (64, 64), (0, 0, 0, 0))
    pen = ImageDraw.Draw(image)
    pen.ellipse((4, 10, 40, 46), fill=(37, 99, 235, 255))
    pen.ellipse((34, 30, 60, 56), fill=(249, 115, 22, 255))
    image.save(path, optimize=True)
    return path


if __name__ == "__main__":
    print(draw())
