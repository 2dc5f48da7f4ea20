"""The app's entry script (app.py): the navigation, and the warning when Streamlit was started
outside PLD Studio's folder, so that .streamlit/config.toml (which turns the tables' built-in
CSV download off) was not read."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from streamlit import config
from streamlit.testing.v1 import AppTest

APP = Path(__file__).resolve().parent.parent / "app.py"


@pytest.fixture
def data_export() -> Iterator[None]:
    before = config.get_option("client.disableDataExport")
    yield
    config.set_option("client.disableDataExport", before)


@pytest.mark.parametrize("disabled", [True, False])
def test_started_outside_its_folder_the_app_says_the_built_in_download_is_on(
        disabled: bool, data_export: None, ws_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLD_WORKSPACE", str(ws_path))
    config.set_option("client.disableDataExport", disabled)
    at = AppTest.from_file(str(APP), default_timeout=60).run()
    assert not at.exception
    warned = [w.value for w in at.warning if "started outside its folder" in w.value]
    assert bool(warned) is not disabled
