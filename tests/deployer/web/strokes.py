"""Mouse strokes for the ten digits on the page's 280x280 drawing pad, as a person might draw them.

Each digit is a list of strokes (mouse down, moves, up); each stroke a list of (x, y) pad
points. Curves are sampled from ellipse arcs; the shapes are deliberately plain
handwriting (an open 4, a 7 without a bar, a 1 with a flag), not MNIST copies.
"""

from __future__ import annotations

import math

Point = tuple[float, float]


def arc(cx: float, cy: float, rx: float, ry: float, start_deg: float, end_deg: float, n: int = 12) -> list[Point]:
    """Points on an ellipse from start_deg to end_deg; 0 deg points right, 90 deg down (screen coordinates)."""
    return [
        (cx + rx * math.cos(math.radians(a)), cy + ry * math.sin(math.radians(a)))
        for a in (start_deg + (end_deg - start_deg) * i / n for i in range(n + 1))
    ]


DIGIT_STROKES: dict[int, list[list[Point]]] = {
    0: [arc(140, 140, 62, 95, -100, 265, 24)],
    1: [[(112, 78), (150, 42), (146, 140), (142, 240)]],
    2: [arc(140, 100, 58, 52, 200, 380, 12) + [(150, 170), (85, 235), (210, 232)]],
    3: [arc(135, 90, 55, 45, 210, 450, 12) + arc(135, 180, 62, 52, -90, 150, 12)],
    4: [[(105, 45), (80, 160), (215, 160)], [(180, 60), (178, 150), (176, 245)]],
    5: [[(200, 45), (105, 45), (95, 125)] + arc(138, 172, 62, 55, -130, 150, 14)],
    6: [arc(175, 170, 90, 125, 290, 180, 10) + arc(140, 185, 55, 52, 180, -180, 18)],
    7: [[(70, 50), (210, 50), (160, 140), (120, 245)]],
    8: [arc(140, 88, 48, 45, 0, -360, 18) + arc(140, 188, 58, 52, 0, 360, 18)],
    9: [arc(132, 95, 52, 48, 0, -360, 18) + [(182, 170), (178, 245)]],
}
