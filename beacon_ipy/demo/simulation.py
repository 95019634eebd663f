"""Simulated beamline devices for the demo: a motor, counters, an MCA, a 2D detector image.

Deterministic for a given seed; the physics is only plausible enough that the plots and
saved files look like a real experiment (a sample peak, a decaying beam, fluorescence
lines).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

MCA_BINS = 2048
MCA_ENERGY_PER_BIN = 0.01  # keV
# (energy keV, relative intensity) of a few fluorescence lines (Fe, Cu, Zn K lines)
MCA_LINES = ((6.40, 1.0), (7.06, 0.15), (8.05, 0.6), (8.90, 0.09), (8.64, 0.35), (9.57, 0.05))


@dataclass
class SimMotor:
    """A motor that reaches its target at once."""

    name: str
    position: float = 0.0
    unit: str = "mm"

    def move(self, target: float) -> None:
        self.position = float(target)


@dataclass
class SimSample:
    """A sample with a Gaussian peak in position (where the signal is) and a beam monitor."""

    center: float = 0.5
    fwhm: float = 0.2
    height: float = 1.0e4
    background: float = 50.0
    center_y: float = 0.5
    monitor_rate: float = 1.0e6  # counts/s
    rng: np.random.Generator = field(default_factory=lambda: np.random.default_rng(0))

    def intensity(self, x: float, y: float | None = None) -> float:
        """Noise-free signal (counts/s scaled by height) at position x (and y for meshes)."""
        sigma = self.fwhm / 2.3548
        g = np.exp(-0.5 * ((x - self.center) / sigma) ** 2)
        if y is not None:
            g *= np.exp(-0.5 * ((y - self.center_y) / sigma) ** 2)
        return float(self.height * g + self.background)

    def diode(self, x: float, count_time: float, y: float | None = None) -> float:
        """Noisy diode counts for one point (Poisson, scaled to the counting time)."""
        expected = self.intensity(x, y) * max(count_time, 1e-3) * 10
        return float(self.rng.poisson(expected))

    def monitor(self, count_time: float) -> float:
        expected = self.monitor_rate * max(count_time, 1e-3)
        return float(self.rng.poisson(expected))

    def spectrum(self, x: float, count_time: float, y: float | None = None) -> np.ndarray:
        """An MCA spectrum: fluorescence lines whose size follows the sample signal."""
        energies = np.arange(MCA_BINS) * MCA_ENERGY_PER_BIN
        scale = self.intensity(x, y) / self.height * max(count_time, 1e-3) * 2e4
        expected = 2.0 + 5.0 * np.exp(-energies / 4.0)
        for energy, rel in MCA_LINES:
            expected = expected + scale * rel * np.exp(-0.5 * ((energies - energy) / 0.08) ** 2)
        return self.rng.poisson(expected).astype(np.float32)

    def image(self, shape: tuple[int, int], x: float, count_time: float,
              y: float | None = None) -> np.ndarray:
        """A detector frame: a beam spot moving with the motor over a noisy background."""
        h, w = shape
        yy, xx = np.mgrid[0:h, 0:w]
        cx = w * (0.2 + 0.6 * np.clip(x, 0.0, 1.0))
        cy = h * (0.5 if y is None else 0.2 + 0.6 * np.clip(y, 0.0, 1.0))
        peak = self.intensity(x, y) / self.height * 4000 * max(count_time, 1e-3) * 10
        spot = peak * np.exp(-(((xx - cx) / (w / 12)) ** 2 + ((yy - cy) / (h / 12)) ** 2))
        frame = self.rng.poisson(spot + 5.0)
        return np.clip(frame, 0, np.iinfo(np.uint16).max).astype(np.uint16)
