"""How personal data is masked for viewers who may not read it (LGPD)."""

from __future__ import annotations


def mask_name(name: str) -> str:
    """Each word down to its initial: ``Bia Raiz`` -> ``B*** R***``."""
    return " ".join(f"{word[0]}***" for word in name.split()) or "***"


def mask_email(email: str | None) -> str | None:
    """``ana@example.com`` -> ``a***@example.com`` (the domain says little about a person)."""
    if not email:
        return email
    local, at, domain = email.partition("@")
    return f"{local[:1]}***{at}{domain}" if at else "***"


def mask_phone(phone: str | None) -> str | None:
    """Only the last two digits: ``+55 11 91234-5678`` -> ``***78``."""
    if not phone:
        return phone
    digits = [c for c in phone if c.isdigit()]
    return "***" + "".join(digits[-2:])
