"""Config files: typos and bad values name the key and the line; flags override the file."""

from pathlib import Path

import pytest

from edgehemo.device.config import CaptureConfig, resolve_state_dir
from edgehemo.tomlconfig import ConfigError, load_model, parse_assignment


def write(tmp_path, text) -> Path:
    path = tmp_path / "edgehemo.toml"
    path.write_text(text)
    return path


def test_a_valid_file_with_overrides(tmp_path):
    path = write(tmp_path, '[capture]\nmodel = "se_cnn_int8"\nthreads = 2\n\n'
                 "[quality]\nmin_focus = 8.5\n")
    config = load_model(CaptureConfig, path, {"capture.threads": 1})
    assert config.capture.model == "se_cnn_int8" and config.capture.threads == 1
    assert config.quality.min_focus == 8.5 and config.cellfinder.stain_threshold == 60


def test_a_typo_names_the_key_and_its_line(tmp_path):
    path = write(tmp_path, '[capture]\nmodel = "x"\n\n[quality]\nmin_focuss = 8\n')
    with pytest.raises(ConfigError, match=r"line 5: quality.min_focuss: unknown key"):
        load_model(CaptureConfig, path)


def test_a_bad_value_names_the_key_and_its_line(tmp_path):
    path = write(tmp_path, "[storage]\nreserve_mb = 10\ncrop_jpeg_quality = \"high\"\n")
    with pytest.raises(ConfigError, match=r"line 3: storage.crop_jpeg_quality: Input should be"):
        load_model(CaptureConfig, path)


def test_an_unknown_section_and_broken_toml(tmp_path):
    with pytest.raises(ConfigError, match=r"line 1: camera: unknown key"):
        load_model(CaptureConfig, write(tmp_path, "[camera]\nx = 1\n"))
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_model(CaptureConfig, write(tmp_path, "[capture\nmodel = 1\n"))


def test_set_assignments_parse_toml_values():
    assert parse_assignment("quality.min_focus=8") == ("quality.min_focus", 8)
    assert parse_assignment("capture.loop=true") == ("capture.loop", True)
    assert parse_assignment("capture.source=usb:0") == ("capture.source", "usb:0")
    with pytest.raises(ConfigError, match=r"SECTION\.KEY=VALUE"):
        parse_assignment("nothing")


def test_state_dir_precedence(tmp_path, monkeypatch):
    config = CaptureConfig.model_validate({"capture": {"state_dir": str(tmp_path / "conf")}})
    monkeypatch.delenv("EDGEHEMO_STATE_DIR", raising=False)
    assert resolve_state_dir(tmp_path / "flag", config) == tmp_path / "flag"
    assert resolve_state_dir(None, config) == tmp_path / "conf"
    monkeypatch.setenv("EDGEHEMO_STATE_DIR", str(tmp_path / "env"))
    assert resolve_state_dir(None, config) == tmp_path / "env"
    monkeypatch.delenv("EDGEHEMO_STATE_DIR")
    monkeypatch.setenv("STATE_DIRECTORY", "/var/lib/edgehemo")
    assert resolve_state_dir(None, CaptureConfig()) == Path("/var/lib/edgehemo")
