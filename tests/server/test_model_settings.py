"""The model settings: flags, MASKLOG_* variables and what the backends' loader gets from them."""

from __future__ import annotations

from pathlib import Path

import pytest

from masklog.server.settings import ModelSettings, Settings, model_settings_from


def test_compile_is_off_unless_a_flag_or_the_variable_turns_it_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MASKLOG_SAM2_COMPILE", raising=False)
    monkeypatch.delenv("MASKLOG_SAM2_COMPILE_CACHE", raising=False)
    off = model_settings_from(None, None, None, None)
    assert off.sam2_compile is False and off.sam2_compile_cache is None
    assert model_settings_from(None, None, None, None, compile=True, compile_cache="/tmp/cc").sam2_compile_cache == Path("/tmp/cc")
    for value, expected in (("1", True), ("on", True), ("TRUE", True), ("0", False), ("no", False), ("", False)):
        monkeypatch.setenv("MASKLOG_SAM2_COMPILE", value)
        assert model_settings_from(None, None, None, None).sam2_compile is expected
    monkeypatch.setenv("MASKLOG_SAM2_COMPILE_CACHE", "/srv/cache")
    assert model_settings_from(None, None, None, None).sam2_compile_cache == Path("/srv/cache")


def test_a_bad_compile_variable_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MASKLOG_SAM2_COMPILE", "sometimes")
    with pytest.raises(ValueError, match="MASKLOG_SAM2_COMPILE must be 1/true/yes/on or 0/false/no/off, not 'sometimes'"):
        model_settings_from(None, None, None, None)


def test_a_bad_compile_mode_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MASKLOG_SAM2_COMPILE_MODE", "fastest")
    with pytest.raises(ValueError, match="MASKLOG_SAM2_COMPILE_MODE must be one of default, .*, not 'fastest'"):
        model_settings_from(None, None, None, None)
    monkeypatch.setenv("MASKLOG_SAM2_COMPILE_MODE", "default")
    assert model_settings_from(None, None, None, None).sam2_compile_mode == "default"
    assert model_settings_from(None, None, None, None, compile_mode="max-autotune-no-cudagraphs").sam2_compile_mode == "max-autotune-no-cudagraphs"


def test_what_the_loader_gets_the_compile_cache_defaults_to_the_data_folder(tmp_path: Path) -> None:
    from masklog.server.app import model_options

    on = model_options(Settings(data=tmp_path, model=ModelSettings(sam2_compile=True)))
    assert on.compile and on.compile_cache == tmp_path / "compile-cache" and on.compile_mode == "max-autotune"
    off = model_options(Settings(data=tmp_path, model=ModelSettings(sam2_compile_cache=tmp_path / "elsewhere", sam2_compile_mode="default")))
    assert not off.compile and off.compile_cache == tmp_path / "elsewhere" and off.compile_mode == "default"
