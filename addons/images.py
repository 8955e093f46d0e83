"""Fetching images given by URL for upstreams that only take them inline."""

from __future__ import annotations

import base64
import urllib.parse

import httpx

from translators.canonical import Image
from translators.translate import TranslationError

# Gemini's inline request data is capped at about 20 MB in all.
MAX_IMAGE_BYTES = 20 * 1024 * 1024
_TIMEOUT = httpx.Timeout(20.0)


def _where(url: str) -> str:
    # The query of a presigned URL is a credential: never repeat it.
    parts = urllib.parse.urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


async def inline_image(client: httpx.AsyncClient, image: Image) -> None:
    """Replace `image`'s URL by its bytes, or raise `TranslationError` (a 400) saying why not."""
    assert image.url is not None
    url = image.url
    try:
        async with client.stream("GET", url, follow_redirects=True, timeout=_TIMEOUT) as response:
            if response.status_code != 200:
                raise TranslationError(
                    f"the image at {_where(url)} could not be fetched (HTTP {response.status_code}); "
                    "send it inline (base64) instead"
                )
            chunks, size = [], 0
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > MAX_IMAGE_BYTES:
                    raise TranslationError(
                        f"the image at {_where(url)} is larger than {MAX_IMAGE_BYTES // 2**20} MB"
                    )
                chunks.append(chunk)
            media_type = response.headers.get("content-type", "").split(";")[0].strip()
    except httpx.HTTPError as e:
        raise TranslationError(
            f"the image at {_where(url)} could not be fetched ({type(e).__name__}); send it inline (base64) instead"
        ) from None
    image.data = base64.b64encode(b"".join(chunks)).decode()
    image.media_type = media_type if media_type.startswith("image/") else image.media_type or "image/png"
    image.url = None
