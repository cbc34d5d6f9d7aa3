"""What happens to an add-on's backups when it is destroyed: the hook between the add-on
servers (`addons.destroy`) and the backups (`paas/addons/backups*.py`, issue 18's backups
part). `addons:destroy` keeps the add-on's last backup for the retention setting unless
`--purge` is given; the backups code fills this function in (the add-on's row stays, with
`destroyed_at`, so a retention period can count from it)."""

from __future__ import annotations

from sqlalchemy.orm import Session

from paas.models import Addon


def on_destroy(db: Session, addon: Addon, *, purge: bool) -> None:
    """Called in the transaction that destroys `addon`, before its server and data go.
    purge: delete its backups now; else keep its last one for the retention period.
    Without backups there is nothing to keep: a no-op until the backups code fills it."""
    del db, addon, purge
