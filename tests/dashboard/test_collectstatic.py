"""The collected static files carry no Chart.js 2.x and no Highcharts, only the vendored Chart.js 4.

django-chartjs's views serve the product's charts, but its static folder ships Chart.js 2.9.3 (prototype
pollution, CVE-2020-7746) and Highcharts: ``chartjs`` must stay out of INSTALLED_APPS so that
``collectstatic`` (and WhiteNoise's finders) never pick them up.
"""

from __future__ import annotations

import re
from io import StringIO
from pathlib import Path

import chartjs
from django.conf import settings
from django.core.management import call_command

CHART_JS_2 = re.compile(rb"Chart\.js v?2\.\d")
CHART_JS_4 = re.compile(rb"Chart\.js v?4\.\d")


def forbidden_files(root: Path) -> list[str]:
    """Files under ``root`` that are Highcharts or Chart.js 2.x, by name or by their licence header."""
    found = []
    for path in root.rglob("*"):
        if not path.is_file():
            continue
        name = path.relative_to(root).as_posix()
        if "highcharts" in name.lower() or CHART_JS_2.search(path.read_bytes()[:2000]):
            found.append(name)
    return found


def test_chartjs_is_not_an_installed_app():
    assert "chartjs" not in settings.INSTALLED_APPS
    assert not any(app.startswith("chartjs.") for app in settings.INSTALLED_APPS)


def test_the_check_finds_what_django_chartjs_ships():
    # Pointed at the package's own static folder, the check finds its Chart.js 2.9.3 and Highcharts.
    shipped = forbidden_files(Path(chartjs.__file__).parent / "static")
    assert "js/Chart.min.js" in shipped
    assert any(name.startswith("js/highcharts/") for name in shipped)


def test_collectstatic_collects_neither_chart_js_2_nor_highcharts(settings, tmp_path):
    settings.STATIC_ROOT = tmp_path / "static"
    call_command("collectstatic", interactive=False, verbosity=0, stdout=StringIO())
    collected = settings.STATIC_ROOT
    assert forbidden_files(collected) == []
    # What the pages load is there: Chart.js 4 and the loader that fetches the chart JSON.
    vendored = (collected / "vendor" / "chartjs" / "chart.umd.min.js").read_bytes()
    assert CHART_JS_4.search(vendored[:2000])
    assert (collected / "js" / "charts.js").is_file()
