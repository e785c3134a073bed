"""The user-facing error: one line, and the shared reading of a file the user supplied."""

from __future__ import annotations

import json

import pytest

from avatar_platform.core.errors import AvatarPlatformError, read_user_file
from avatar_platform.formats.lora_folder import lora_meta


def test_a_readable_file_is_parsed(tmp_path):
    path = tmp_path / "lora.json"
    path.write_text(json.dumps({"token": "zorb"}))
    assert read_user_file(path, "it", expected="x", fix="y", parse=json.loads) == {"token": "zorb"}
    assert lora_meta(str(tmp_path)) == {"token": "zorb"}


@pytest.mark.parametrize(
    ("content", "why"),
    [(b"\xff\xfe not utf-8", "codec can't decode"), (b"{not json", "Expecting property name")],
    ids=["not-utf8", "not-json"],
)
def test_an_unreadable_or_unparsable_file_is_one_error_naming_it(tmp_path, content, why):
    (tmp_path / "lora.json").write_bytes(content)
    with pytest.raises(AvatarPlatformError) as err:
        lora_meta(str(tmp_path))
    message = err.value.message
    assert message.startswith(f"the LoRA description '{tmp_path / 'lora.json'}' could not be read (")
    assert why in message and "expected the lora.json" in message and "fix: " in message


def test_a_missing_file_is_one_error_too(tmp_path):
    with pytest.raises(AvatarPlatformError, match="the caption file '.*gone.txt' could not be read"):
        read_user_file(tmp_path / "gone.txt", "the caption file", expected="a caption", fix="write one")
