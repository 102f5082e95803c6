"""Bar charts for the operator page, as geometry for an SVG template: no chart
library, no script, nothing fetched. Every chart has a title and a description
(read out by screen readers) and the page shows its figures in a table too."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .operator_page import Figures

WIDTH, HEIGHT = 640, 240
LEFT, RIGHT, TOP, BOTTOM = 44, 8, 12, 36
# Okabe-Ito colours: told apart with the common colour-vision deficiencies.
KIND_LABELS = {"candidature": "Candidatures", "rdv": "Rendez-vous"}
COLOURS = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000")


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    colour: str
    label: str  # shown as a tooltip (<title>)


@dataclass
class Chart:
    id: str
    title: str
    description: str
    bars: list[Bar] = field(default_factory=list)
    ticks: list[tuple[float, str]] = field(default_factory=list)  # y, label
    x_labels: list[tuple[float, str]] = field(default_factory=list)  # x, label
    legend: list[tuple[str, str]] = field(default_factory=list)  # colour, label
    values: list[list[str]] = field(default_factory=list)  # per series, per label: the table
    width: int = WIDTH
    height: int = HEIGHT


def _french(value: float) -> str:
    return f"{value:g}".replace(".", ",")


def _nice_ceiling(value: float) -> float:
    if value <= 0:
        return 1.0
    magnitude = 10.0 ** math.floor(math.log10(value))
    return next(step * magnitude for step in (1.0, 2.0, 2.5, 5.0, 10.0) if step * magnitude >= value)


def bar_chart(
    id: str,
    title: str,
    description: str,
    labels: Sequence[str],
    series: Sequence[tuple[str, Sequence[float]]],
    *,
    stacked: bool,
    unit: str = "",
) -> Chart:
    """One group (or stack) of bars per label, one bar per series."""
    chart = Chart(id, title, description)
    plot_width, plot_height = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    totals = (
        [sum(values[n] for _, values in series) for n in range(len(labels))]
        if stacked
        else [max((values[n] for _, values in series), default=0) for n in range(len(labels))]
    )
    top = _nice_ceiling(max(totals, default=0))
    scale = plot_height / top
    slot = plot_width / max(len(labels), 1)
    bar_width = slot * 0.7 / (1 if stacked else max(len(series), 1))
    for n, label in enumerate(labels):
        x0 = LEFT + n * slot + slot * 0.15
        base = 0.0
        for index, (name, values) in enumerate(series):
            value = values[n]
            height = value * scale
            x = x0 if stacked else x0 + index * bar_width
            y = TOP + plot_height - (base + height if stacked else height)
            chart.bars.append(
                Bar(
                    x,
                    y,
                    bar_width,
                    height,
                    COLOURS[index % len(COLOURS)],
                    f"{label} – {name} : {value:g}{unit}",
                )
            )
            if stacked:
                base += height
        chart.x_labels.append((LEFT + n * slot + slot / 2, label))
    for fraction in (0, 0.5, 1):
        chart.ticks.append((TOP + plot_height * (1 - fraction), f"{_french(top * fraction)}{unit}"))
    chart.legend = [(COLOURS[i % len(COLOURS)], name) for i, (name, _) in enumerate(series)]
    chart.values = [[f"{_french(value)}{unit}" for value in values] for _, values in series]
    return chart


def charts(figures: Figures) -> list[Chart]:
    weeks = figures.weeks
    labels = [f"{w.start:%d/%m}" for w in weeks]
    kinds = sorted({kind for w in weeks for kind in w.requests})
    first, last = labels[0] if labels else "", labels[-1] if labels else ""
    period = f"par semaine, du lundi {first} à la semaine du {last}"
    return [
        bar_chart(
            "requests",
            "Demandes par semaine",
            f"Barres empilées : demandes reçues {period}, par type de demande. "
            "Les chiffres sont dans le tableau qui suit.",
            labels,
            [(KIND_LABELS.get(kind, kind), [w.requests.get(kind, 0) for w in weeks]) for kind in kinds],
            stacked=True,
        ),
        bar_chart(
            "outcomes",
            "Remises, réponses et adresses en échec",
            f"Barres groupées {period} : emails remis aux recruteurs et CFA, demandes "
            "qui ont reçu une réponse, adresses en échec.",
            labels,
            [
                ("Remises", [w.delivered for w in weeks]),
                ("Répondues", [w.answered for w in weeks]),
                ("En échec", [w.bounced for w in weeks]),
            ],
            stacked=False,
        ),
        bar_chart(
            "reply-rate",
            "Taux de réponse",
            f"Pourcentage des demandes remises qui ont reçu une réponse, {period}.",
            labels,
            [("Taux de réponse", [round(100 * (w.reply_rate or 0), 1) for w in weeks])],
            stacked=False,
            unit=" %",
        ),
        bar_chart(
            "partners",
            "Demandes par partenaire",
            f"Barres empilées : demandes reçues {period}, par site partenaire.",
            labels,
            [(name, counts) for name, counts in figures.partners],
            stacked=True,
        ),
    ]
