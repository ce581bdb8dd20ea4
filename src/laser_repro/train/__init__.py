"""Shared trainer scaffolding (:mod:`.scaffold`) used by every method's trainer."""
