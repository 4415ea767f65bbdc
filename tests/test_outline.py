"""The report's outline: sections are registered objects; a figure's FigureSpec.section is what places it; what a
figure needs and when it is drawn are typed (Needs, Stage)."""

import pytest

from fer_bench import outline
from fer_bench.figures import FIGURES, FigureContext, render_figures, section_markdown
from fer_bench.figures.data import FigureSpec, Needs, Scope, Stage
from fer_bench.outline import SECTIONS, Section
from fer_bench.report.sections import SECTION_MARKDOWN
from fer_bench.settings import Settings


def test_every_figure_goes_to_a_registered_section():
    unregistered = [spec.name for spec in FIGURES if spec.section not in SECTIONS]
    assert not unregistered, f"figures placed in a section missing from outline.SECTIONS: {unregistered}"


def test_sections_are_unique_and_each_has_content():
    assert len({s.id for s in SECTIONS}) == len(SECTIONS)
    assert len({s.title for s in SECTIONS}) == len(SECTIONS)
    assert [s.order for s in SECTIONS] == list(range(len(SECTIONS)))
    assert set(SECTION_MARKDOWN) <= set(SECTIONS)
    # a section without a markdown function shows figures; without any figure it would never appear
    figure_sections = {spec.section for spec in FIGURES}
    empty = [s.id for s in SECTIONS if s not in SECTION_MARKDOWN and s not in figure_sections]
    assert not empty, f"sections with neither a markdown function nor a figure: {empty}"
    # an intro is shown above figures only
    assert all(s in figure_sections for s in SECTIONS if s.intro)


def test_an_unregistered_section_has_no_order():
    with pytest.raises(ValueError):
        _ = Section("nowhere", "Nowhere").order


def test_the_spec_section_places_the_figure(tmp_path):
    """The draw function names no section: what it writes goes where its FigureSpec says."""
    def draw(output, ctx):
        output.note("a note from the figure")

    for section in (outline.ROC_FIGURES, outline.SALIENCY_FIGURES):
        spec = FigureSpec("note", section, Needs.TIMINGS, draw, scope=Scope.GRID)
        output = render_figures(FigureContext([], Settings(), tmp_path), figures=(spec,))
        assert list(output.parts) == [section]
        text = section_markdown(output, section)
        assert text.endswith("a note from the figure")
        assert text.startswith(section.intro) if section.intro else text == "a note from the figure"


@pytest.mark.parametrize("needs, scope, stage", [
    (Needs.PREDICTIONS, Scope.TASK, Stage.PER_TASK),
    (Needs.HISTORY, Scope.GRID, Stage.ONCE),
    (Needs.TIMINGS, Scope.GRID, Stage.ONCE),
    (Needs.IMAGES, Scope.TASK, Stage.PER_TASK_LOADED),
    (Needs.IMAGES | Needs.MAPS, Scope.TASK, Stage.PER_TASK_LOADED),
    (Needs.MAPS, Scope.GRID, Stage.ONCE_LOADED),
    (Needs.PREDICTIONS | Needs.MAPS, Scope.GRID, Stage.ONCE_LOADED),
])
def test_stage_follows_from_needs_and_scope(needs, scope, stage):
    assert FigureSpec("f", outline.ROC_FIGURES, needs, lambda *a: None, scope).stage is stage


def test_figures_are_drawn_stage_by_stage_in_registry_order(tmp_path):
    drawn = []

    def recorder(name):
        return lambda output, ctx, *task: drawn.append(name)

    specs = (FigureSpec("maps_once", outline.SALIENCY_FIGURES, Needs.MAPS, recorder("maps_once"), scope=Scope.GRID),
             FigureSpec("history", outline.SELECTION, Needs.HISTORY, recorder("history"), scope=Scope.GRID),
             FigureSpec("timings", outline.TIMING, Needs.TIMINGS, recorder("timings"), scope=Scope.GRID))
    render_figures(FigureContext([], Settings(), tmp_path), figures=specs)
    assert drawn == ["history", "timings", "maps_once"]


def test_figure_intros_name_the_reports_bins_and_reference(tmp_path):
    """The calibration intro counts the settings' ECE bins and the confusion intro names the report's reference,
    never "CNN" when the reference is another model."""
    from types import SimpleNamespace

    from fer_bench.report.sections import section_builder

    def draw(output, ctx):
        output.note("a figure")

    specs = tuple(FigureSpec(f"note_{s.id}", s, Needs.TIMINGS, draw, scope=Scope.GRID)
                  for s in (outline.CALIBRATION_FIGURES, outline.CONFUSION_FIGURES))
    output = render_figures(FigureContext([], Settings(), tmp_path), figures=specs)
    for reference_is_default, name in ((False, "reference model"), (True, "CNN")):
        ctx = SimpleNamespace(figures=output, inputs=SimpleNamespace(settings=Settings(ece_bins=7),
                                                                     reference_is_default=reference_is_default))
        calibration = section_builder(outline.CALIBRATION_FIGURES)(ctx)
        assert "in 7 equal-width bins" in calibration and "15" not in calibration
        confusion = section_builder(outline.CONFUSION_FIGURES)(ctx)
        assert f"({name} minus another model" in confusion
        assert ("CNN" in confusion) == reference_is_default
