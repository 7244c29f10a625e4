"""Raw bodies of image, audio and video tasks: what they are, told by their first bytes.

``huggingface_hub`` sends raw bytes *without* a ``Content-Type`` when it has no file name
(docs/hf_api.md §5.2, §8.10), so the declared type cannot be trusted to be there; the magic numbers
of the common formats can.
"""

from __future__ import annotations

import json
import re

__all__ = ["JSON_TYPES", "is_json_type", "media_kind", "sniff"]

_SIGNATURES: tuple[tuple[int, bytes, str], ...] = (
    (0, b"\x89PNG\r\n\x1a\n", "image/png"),
    (0, b"\xff\xd8\xff", "image/jpeg"),
    (0, b"GIF87a", "image/gif"),
    (0, b"GIF89a", "image/gif"),
    (0, b"II*\x00", "image/tiff"),
    (0, b"MM\x00*", "image/tiff"),
    (0, b"fLaC", "audio/flac"),
    (0, b"OggS", "audio/ogg"),
    (0, b"ID3", "audio/mpeg"),
    (0, b"#!AMR", "audio/amr"),
    (0, b"\x1aE\xdf\xa3", "video/webm"),
)
_JSON_FIRST = (b"{", b"[", b'"')
_LEADING_SPACE = re.compile(rb"[ \t\n\r\x0b\x0c]*")
"""What ``bytes.strip`` strips (JSON itself allows only space, tab, CR and LF; the parser refuses the rest)."""
_UNICODE_FIRST = (b"\x00", b"\xef", b"\xfe", b"\xff")
"""First bytes of UTF-16/32 text and of a UTF-8 BOM."""
JSON_TYPES = ("application/json",)
"""Content types a JSON route accepts (plus any ``application/*+json``, and no content type at all)."""


def sniff(body: bytes) -> str | None:
    """The media type of ``body`` from its magic number, or ``None`` when it is not a known format."""
    head = body[:16]
    for offset, magic, media in _SIGNATURES:
        if head.startswith(magic, offset):
            return media
    if head[:2] == b"BM" and head[6:10] == b"\x00\x00\x00\x00":  # "BM", the file size, 4 reserved zero bytes
        return "image/bmp"
    if head[:4] == b"RIFF" and len(head) >= 12:
        return {b"WEBP": "image/webp", b"WAVE": "audio/wav", b"AVI ": "video/x-msvideo"}.get(head[8:12])
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in (b"avif", b"avis"):
            return "image/avif"
        if brand in (b"heic", b"heix", b"mif1"):
            return "image/heic"
        return "audio/mp4" if brand in (b"M4A ", b"M4B ") else "video/mp4"
    if len(head) >= 3 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0:  # an MPEG audio frame (MP3 without ID3)
        if not head[1] & 0x06:  # layer 00: ADTS (AAC), a 12-bit sync and a sampling index of 0..12
            return "audio/aac" if head[1] & 0xF0 == 0xF0 and (head[2] >> 2) & 0x0F <= 12 else None
        if head[1] & 0x18 != 0x08 and head[2] >> 4 != 0x0F and head[2] & 0x0C != 0x0C:  # no reserved field
            return "audio/mpeg"
    return None


def media_kind(media_type: str | None) -> str | None:
    """``image``, ``audio`` or ``video`` for a media type (``video/webm`` may hold audio only)."""
    if not media_type:
        return None
    major = media_type.split("/", 1)[0].strip().lower()
    return major if major in ("image", "audio", "video") else None


def is_json_type(content_type: str) -> bool:
    """Whether a ``Content-Type`` value announces JSON (``application/json``, ``application/*+json``)."""
    media = content_type.split(";", 1)[0].strip().lower()
    return media in JSON_TYPES or (media.startswith("application/") and media.endswith("+json"))


def looks_like_json(body: bytes) -> bool:
    """Whether ``body`` starts (after whitespace, however much) like a JSON document of the task API.

    UTF-16/32 and a UTF-8 BOM count too: ``json.loads`` (ours, and a Python upstream's) reads them.
    """
    start = _LEADING_SPACE.match(body).end()  # type: ignore[union-attr]  # matches the empty string at worst
    if body[start : start + 1] in _JSON_FIRST:
        return True
    if body[:1] in _UNICODE_FIRST or body[1:2] == b"\x00":
        encoding = json.detect_encoding(body[:4])
        if encoding != "utf-8":
            text = body[:256].decode(encoding, "ignore").lstrip(" \t\r\n\ufeff")
            return text[:1] in ("{", "[", '"')
    return False
