"""The metric columns the tables can show, in order: one place to add a metric (name, digits, which way is better).

A column appears in a table only when some run of that table logged it (``test_<name>`` in MLflow), so adding an
entry here is all a new metric needs.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Column:
    name: str  # the metric's name without the ``test_`` prefix, as logged by `llvfsr.evaluate`
    digits: int  # decimals shown
    higher_is_better: bool  # decides which value is bold (best) and underlined (second)
    label: str = ""  # the column title (default: the name in capitals)

    @property
    def title(self) -> str:
        return self.label or self.name.upper()


COLUMNS: tuple[Column, ...] = (
    Column("psnr", 2, True),
    Column("ssim", 4, True),
    Column("niqe", 3, False),
    Column("lpips", 4, False),
    Column("psnr_eyes", 2, True),  # synthetic faces only: the generator's exact eye masks
    Column("psnr_face", 2, True),
    Column("identity", 4, False),  # DeepFace cosine distance, SR vs HR (Fig. 7)
    Column("landmark_error", 2, False),  # FSRNet / DIC landmark heads, pixels
    # synthetic faces only: balanced accuracy of the attribute readers (`llvfsr.data.synthetic_attributes`) on what
    # only the description states; chance is 1 / options (iris 0.20, frames 0.25, earrings 0.33)
    Column("attr_eye_colour_bacc", 2, True, "IRIS bacc (0.20)"),
    Column("attr_eye_colour_centred_bacc", 2, True, "IRIS centred bacc (0.20)"),  # the run's shared iris removed
    Column("attr_eye_colour_matched_bacc", 2, True, "IRIS matched bacc (0.20)"),  # the stated colour's pattern
    Column("attr_glasses_bacc", 2, True, "FRAMES bacc (0.25)"),
    Column("attr_earrings_bacc", 2, True, "EARRINGS bacc (0.33)"),
)
BY_NAME = {column.name: column for column in COLUMNS}


def present(names: list[str] | set[str]) -> list[Column]:
    """The columns among `names` (the metrics some run logged), in table order."""
    return [column for column in COLUMNS if column.name in names]
