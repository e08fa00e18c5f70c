"""The object store: presigned grants (``sigv4``), objects and buckets (``storage``), bucket
notification rules (``notifications``)."""
