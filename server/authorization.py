"""Who may send which command: the security rules, in one place so that REST and the socket
apply the same ones, and so docs/api.md can list them.

| command                                   | who                                          |
|-------------------------------------------|----------------------------------------------|
| project_created                           | account admins                               |
| class_added, media upload (REST)          | project admins                               |
| track_cancelled                           | the requester, or a project admin            |
| media_added, segment_proposed,            | nobody directly: the server and model actors |
| track_frame_produced,                     |                                              |
| track_completed, track_failed, undone,    |                                              |
| redone                                    |                                              |
| everything else (objects, prompts, SAM    | annotators and admins of the project         |
| saves, labels, tracks, review, undo, redo)|                                              |

Viewers read and never write. A command sent through one media item's socket or command route
must be about that media item; one about a project the sender is not a member of is answered as
if its ids did not exist (`unknown_id`), the way the REST routes answer for another project's
media, so membership never reveals what exists elsewhere.

Where a command lands (its project and media item) is decided by `domain.decide.scope_of` alone;
the rules here only judge the `Scope` it returns, and the hidden-id answer is the error
`scope_of` itself gives for a missing id (`domain.decide.hidden_id_error`).
"""

from __future__ import annotations

from masklog.domain.decide import Command, Scope, hidden_id_error
from masklog.domain.events import (
    ClassAdded,
    MediaAdded,
    ProjectCreated,
    Redone,
    SegmentProposed,
    TrackCancelled,
    TrackCompleted,
    TrackFailed,
    TrackFrameProduced,
    Undone,
)
from masklog.server.accounts import RANK, Accounts, Role, User
from masklog.server.context import Context


class Forbidden(Exception):
    """The sender may not do this; answered as `forbidden` (403)."""


# Events only the server and the model actors write; no client may send them.
SERVER_ONLY = (MediaAdded, SegmentProposed, TrackFrameProduced, TrackCompleted, TrackFailed, Undone, Redone)


def require(accounts: Accounts, user: User, project: str, at_least: Role) -> Role:
    """The user's role in `project`; Forbidden if they are no member or rank below `at_least`."""
    role = accounts.role_in(user, project)
    if role is None:
        raise Forbidden("you are not a member of this project")
    if RANK[role] < RANK[at_least]:
        raise Forbidden(f"this needs the {at_least.value} role; you are {role.value}")
    return role


def authorize_command(ctx: Context, user: User, command: Command, scope: Scope) -> None:
    """Raise Forbidden unless `user` may send `command`, which lands on `scope`."""
    if isinstance(command, SERVER_ONLY):
        raise Forbidden(f"'{type(command).__struct_config__.tag}' events are written by the server itself")
    if isinstance(command, ProjectCreated):
        if user.role != Role.ADMIN:
            raise Forbidden("only account admins create projects")
        return
    if isinstance(command, ClassAdded):
        require(ctx.accounts, user, scope.project, Role.ADMIN)
        return
    role = require(ctx.accounts, user, scope.project, Role.ANNOTATOR)
    if isinstance(command, TrackCancelled):
        # Authorized while the command is decided: its media item's state is loaded.
        state = ctx.ledger.loaded(scope.media) if scope.media is not None else None
        track = state.tracks.get(command.track) if state is not None else None
        if track is not None and track.actor != user.actor and role != Role.ADMIN:
            raise Forbidden("only the requester or a project admin can cancel a track")


def authorize_on_media(ctx: Context, user: User, command: Command, scope: Scope, media_id: str) -> None:
    """`authorize_command` for a command sent through media item `media_id` (its socket or its
    command route): the command must land on that media item."""
    if scope.media != media_id:
        if scope.media is not None and ctx.accounts.role_in(user, scope.project) is None:
            raise hidden_id_error(command)
        raise Forbidden(f"commands sent here must be about media {media_id!r}")
    authorize_command(ctx, user, command, scope)
