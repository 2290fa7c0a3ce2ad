"""Operations: listing held locks, force-clearing them, and the admin's changelist over them."""
