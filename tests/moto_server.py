"""moto's standalone server, as FoldDB's S3 storage tests run it (tests/src/s3.rs).

Same arguments as `moto_server`. One difference, working around moto issue #5948: moto
checks a request's SigV4 signature against werkzeug's `Request.url`, an IRI in which `%2F`
in the query string is decoded to `/`, so every signed listing by prefix (`prefix=a%2F`,
`delimiter=%2F`) fails with SignatureDoesNotMatch although the client signed it right. Here
the URL keeps the query string exactly as the client sent it; the path is untouched.
"""

import sys

from werkzeug.sansio.request import Request
from werkzeug.utils import cached_property

_iri = Request.url.fget


def url(self):
    """The request's URL, its query string as sent."""
    iri = _iri(self)
    query = self.query_string.decode("latin-1")
    if not query:
        return iri
    return iri.split("?", 1)[0] + "?" + query


Request.url = cached_property(url)

from moto.server import main  # noqa: E402  (after the patch, which it must see)

if __name__ == "__main__":
    main(sys.argv[1:])
