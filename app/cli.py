"""The ``facerec`` command line.

Commands, their names and their JSON fields are a public interface: keep them stable.
Exit codes: 0 success, 1 a runtime failure (one line on stderr says why), 2 usage error.
Qt is imported only by the ``gui`` command, so everything else runs headless.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from app import __version__
from app.config import DEFAULT_FALSE_ACCEPT, Paths, Settings, store_location
from app.log import setup_logging
from app.pipeline.errors import FacerecError, ImageError, NoFaceError

log = logging.getLogger(__name__)

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2
#: How often `watch` looks for changes to the gallery made elsewhere (seconds).
WATCH_REFRESH_S = 0.5
#: Seconds between writes of the recognition log during ``watch --log``.
LOG_FLUSH_S = 2.0


class UsageError(Exception):
    """A mistake in how the command was called (exit code 2)."""


def _err(msg: str) -> None:
    print(f"facerec: error: {msg}", file=sys.stderr)


def _note(msg: str) -> None:
    print(msg, file=sys.stderr)


# -- commands ------------------------------------------------------------------------

def _open_recognizer(args: argparse.Namespace):  # noqa: ANN202 - lazy import keeps --help fast
    """The Recognizer over the user's data; a line on stderr if faces need enrolling again."""
    from app.pipeline.recognition.recognizer import Recognizer

    rec = Recognizer.open(args.paths, store=args.store)
    try:
        note = rec.outdated().note()
    except BaseException:
        rec.close()
        raise
    if note:
        _note(f"note: {note} (facerec people lists them)")
    return rec


def _settings(args: argparse.Namespace) -> Settings:
    """The user's settings, read once per command (a bad file warns once, not per use)."""
    if getattr(args, "settings", None) is None:
        args.settings = Settings.load(args.paths.settings)
    settings: Settings = args.settings
    return settings


def _location(args: argparse.Namespace) -> str | Path:
    """The gallery this command works on: --store, FACEREC_STORE, the settings or faces.db."""
    return store_location(args.paths, _settings(args), args.store)


def _open_store(args: argparse.Namespace):  # noqa: ANN202
    """The store, for a command that reads or changes people but does not recognise."""
    from app.pipeline.storage.store import open_store

    return open_store(_location(args), cache_dir=args.paths.ensure().root, background=False)


def _require_enroll(store) -> None:  # noqa: ANN001
    """Refuse early, before any photo is read, where people cannot be changed."""
    from app.pipeline.storage.shared import describe_offline

    if not store.can_enroll:
        from app.pipeline.storage.pgstore import ENROLLER_ROLE, StoreReadOnlyError

        raise StoreReadOnlyError(f"this workstation may only recognise: its database role cannot "
                                 f"change people in {store.label} (enrolling needs the "
                                 f"{ENROLLER_ROLE} role)")
    if store.offline_since is not None:
        from app.pipeline.storage.pgstore import StoreOfflineError

        raise StoreOfflineError(f"{describe_offline(store.offline_since)} ({store.label}): "
                                "enrolling waits until it is back (nothing was saved)")


def _person_name(text: str) -> str:
    """A person's name from the command line; an empty or invalid one is a usage error."""
    from app.pipeline.errors import PersonError
    from app.pipeline.types import normalize_name

    try:
        return normalize_name(text)
    except PersonError as exc:
        raise UsageError(f"{exc}: {text!r}") from None


def _screen(labels: Sequence[str], flags: Sequence, force: bool, target: str) -> list[bool]:  # type: ignore[type-arg]
    """Which flagged faces may be saved: a refused one gets one line on stderr."""
    keep = []
    for label, flag in zip(labels, flags):
        if flag is None:
            keep.append(True)
        elif force:
            _note(f"warning: {label}: {flag.reason}; saved to {target} anyway (--force)")
            keep.append(True)
        else:
            _err(f"{label}: {flag.reason}; not saved to {target} (check it, or pass --force)")
            keep.append(False)
    return keep


def cmd_enroll(args: argparse.Namespace) -> int:
    """Add the largest face of each image to a person, after the same-person checks."""
    from app.pipeline.imageio import display_name
    from app.pipeline.types import PHOTO

    name = _person_name(args.name)
    with _open_recognizer(args) as rec:
        _require_enroll(rec.store)
        faces, labels, failed = [], [], 0
        for path in args.images:
            try:
                faces.append(rec.prepare_file(path, PHOTO).face)
                labels.append(display_name(path))
            except (ImageError, NoFaceError) as exc:
                _err(str(exc))
                failed += 1
        existing = rec.store.person(name)
        target = existing.name if existing else name
        keep = _screen(labels, rec.check_faces(name, [f.embedding for f in faces]) if faces else [],
                       args.force, target)
        faces = [f for f, k in zip(faces, keep) if k]
        failed += keep.count(False)
        if not faces:
            _err(f"nothing enrolled for {target!r}")
            return EXIT_FAIL
        person = rec.enroll(name, faces)
        if existing is not None:
            print(f"added {len(faces)} face(s) to the existing person {person.name} "
                  f"({person.face_count} in total)")
        else:
            print(f"enrolled {len(faces)} face(s) for {person.name} (a new person)")
    return EXIT_FAIL if failed else EXIT_OK


def cmd_import(args: argparse.Namespace) -> int:
    """Import a folder with one subfolder of photos per person."""
    from tqdm import tqdm

    from app.pipeline.imageio import display_name, person_folders
    from app.pipeline.types import PHOTO

    root = Path(args.dir)
    found = person_folders(root)
    jobs, skipped = found.photos, list(found.skipped)
    if found.loose:
        _note(f"note: {found.loose} image(s) directly in {display_name(root)} are ignored; "
              "put each person's photos in a subfolder named after them")
    if not jobs:
        raise FacerecError(f"{display_name(root)}: no photos to import (expected one subfolder "
                           "of photos per person)")
    batches: dict[str, list] = {}
    labels: dict[str, list[str]] = {}
    refused = 0
    with _open_recognizer(args) as rec:
        _require_enroll(rec.store)
        for name, f in tqdm(jobs, desc="importing", unit="photo", disable=None, file=sys.stderr):
            try:
                batches.setdefault(name, []).append(rec.prepare_file(f, PHOTO).face)
                labels.setdefault(name, []).append(display_name(f))
            except (ImageError, NoFaceError) as exc:
                skipped.append(str(exc))
        for name, faces in list(batches.items()):
            if faces:
                keep = _screen(labels[name], rec.check_faces(name, [x.embedding for x in faces]),
                               args.force, name)
                refused += keep.count(False)
                batches[name] = [x for x, k in zip(faces, keep) if k]
        batches = {n: fs for n, fs in batches.items() if fs}
        # Counted as stored: folders that name the same person count once.
        people = rec.enroll_many(list(batches.items())) if batches else {}
    added = sum(len(v) for v in people.values())
    print(f"imported {added} face(s) for {len(people)} people; skipped {len(skipped)} file(s)"
          + (f"; refused {refused} face(s) that failed the same-person checks" if refused else ""))
    for line in skipped:
        _note(f"  skipped {line}")
    return EXIT_OK if added and not refused else EXIT_FAIL


def cmd_people(args: argparse.Namespace) -> int:
    """List enrolled people."""
    from app.pipeline.storage.outdated import outdated

    with _open_store(args) as store:
        people = store.people()
        old = outdated(store)
        damaged = Counter(pid for _, pid, _ in store.damaged_faces())
    if args.json:
        print(json.dumps([{"name": p.name, "faces": p.face_count, "older_version_faces": old.of(p.id),
                           "created": datetime.fromtimestamp(p.created, timezone.utc).isoformat()}
                          for p in people], ensure_ascii=False))
    elif not people:
        _note("nobody is enrolled yet; add someone with: facerec enroll NAME PHOTO...")
    else:
        width = max(len(p.name) for p in people)
        for p in people:
            n_old = old.of(p.id)
            print(f"{p.name:<{width}}  {p.face_count} face(s)" + (
                "" if not n_old else
                ", all by an older version: not recognised, enroll again from photos"
                if n_old >= p.face_count else
                f", {n_old} by an older version: not used, enroll again from photos"))
    if old.faces and not args.json:
        _note(f"note: {old.note()}")
    if damaged:
        from app.pipeline.storage.store import DAMAGED_ADVICE

        who = ", ".join(f"{p.name!r} ({damaged[p.id]})" for p in people if p.id in damaged)
        _note(f"warning: {sum(damaged.values())} stored face(s) are damaged and not used for "
              f"recognition: {who}; {DAMAGED_ADVICE}")
    return EXIT_OK


def cmd_rename(args: argparse.Namespace) -> int:
    """Rename a person."""
    old, new = _person_name(args.old), _person_name(args.new)
    with _open_recognizer(args) as rec:
        person = rec.rename(old, new)
    print(f"renamed to {person.name}")
    return EXIT_OK


def cmd_remove(args: argparse.Namespace) -> int:
    """Delete a person and all their faces."""
    name = _person_name(args.name)
    with _open_recognizer(args) as rec:
        person = rec.remove(name)
    print(f"removed {person.name} and {person.face_count} face(s)")
    return EXIT_OK


def cmd_faces(args: argparse.Namespace) -> int:
    """List a person's faces with their ids, and any same-person flag."""
    from app.pipeline.recognition.align import EMBEDDING_VERSION

    name = _person_name(args.name)
    with _open_recognizer(args) as rec:
        faces = rec.faces_of(name)
        flags = rec.audit(name)
        person = rec.store.person(name)
    assert person is not None
    if args.json:
        print(json.dumps([{
            "id": f.id, "source": f.source, "embedder": f.embedder,
            "created": datetime.fromtimestamp(f.created, timezone.utc).isoformat(),
            "current": f.embedder == EMBEDDING_VERSION,
            "flag": flags[f.id].reason if f.id in flags else None} for f in faces],
            ensure_ascii=False))
        return EXIT_OK
    if not faces:
        _note(f"{person.name} has no faces; add some with: facerec enroll {person.name!r} PHOTO...")
        return EXIT_OK
    width = max(len(f.source or "-") for f in faces)
    for f in faces:
        when = datetime.fromtimestamp(f.created).strftime("%Y-%m-%d %H:%M")
        line = f"{f.id:>6}  {f.source or '-':<{width}}  {when}"
        print(line + (f"  flagged: {flags[f.id].reason}" if f.id in flags else ""))
    return EXIT_OK


def cmd_remove_face(args: argparse.Namespace) -> int:
    """Delete single faces by id (their person stays)."""
    from app.pipeline.errors import PersonError

    with _open_recognizer(args) as rec:
        owners = {}
        for face_id in args.ids:
            info = rec.store.face(face_id)
            if info is None:
                raise PersonError(f"no face with id {face_id}")
            owners[face_id] = info.person_id
        rec.remove_faces(args.ids)
        for pid in dict.fromkeys(owners.values()):
            person = rec.store.person_by_id(pid)
            gone = [i for i, p in owners.items() if p == pid]
            if person is not None:
                print(f"removed {_faces_text(gone)} from {person.name} "
                      f"({person.face_count} left)")
    return EXIT_OK


def _faces_text(ids: Sequence[int]) -> str:
    return f"face {ids[0]}" if len(ids) == 1 else f"faces {', '.join(map(str, ids))}"


def cmd_move_face(args: argparse.Namespace) -> int:
    """Give faces to another person, after the same-person checks."""
    to = _person_name(args.to)
    with _open_recognizer(args) as rec:
        existing = rec.store.person(to)
        target = existing.name if existing else to
        flags = rec.check_move(args.ids, to)
        keep = _screen([f"face {i}" for i in args.ids], flags, args.force, target)
        if not all(keep):
            _err(f"nothing moved to {target!r}")
            return EXIT_FAIL
        person = rec.move_faces(args.ids, to)
    what = "the existing person" if existing is not None else "a new person"
    print(f"moved {_faces_text(args.ids)} to {what} {person.name} ({person.face_count} in total)")
    return EXIT_OK


def cmd_identify(args: argparse.Namespace) -> int:
    """Name every face in each image."""
    from app.pipeline.imageio import display_name, load_image

    results, failed = [], 0
    with _open_recognizer(args) as rec:
        for path in args.images:
            entry: dict[str, object] = {"image": display_name(path)}
            try:
                res = rec.process(load_image(path))
            except ImageError as exc:
                _err(str(exc))
                entry["faces"], entry["error"] = [], str(exc)
                failed += 1
            else:
                entry["faces"] = [f.to_json() for f in res.faces]
                if not args.json:
                    _print_faces(display_name(path), res.faces)
            results.append(entry)
    if args.json:
        print(json.dumps(results, ensure_ascii=False))
    return EXIT_FAIL if failed else EXIT_OK


def _print_faces(label: str, faces: Sequence) -> None:  # type: ignore[type-arg]
    if not faces:
        print(f"{label}: no face found")
    for f in faces:
        x, y, w, h = f.box
        who = f.name if f.name is not None else "Unknown"
        print(f"{label}: {who} (similarity {f.similarity:.3f}) at x={x} y={y} w={w} h={h}")


def cmd_watch(args: argparse.Namespace) -> int:
    """Run recognition on a camera, video file or stream."""
    from app.pipeline.recognition.sources import VideoSource
    from app.pipeline.recognition.stream import GalleryFollower, Processed, Stream
    from app.pipeline.storage.shared import describe_offline

    settings = _settings(args)
    # Opened before the models load: a source that does not open fails fast.
    source = VideoSource(args.source, settings.camera_width, settings.camera_height)
    names: Counter[str] = Counter()
    frames = faces = unknown = 0
    t0 = time.perf_counter()
    interrupted = False
    journal = None
    logged: set[str] = set()
    flushed_at = time.monotonic()
    stream: Stream | None = None

    def report(p: Processed) -> None:
        nonlocal frames, faces, unknown
        res = p.result
        if journal is not None:
            journal.update(res)
        if args.json:
            print(json.dumps({"frame": frames, "faces": [f.to_json() for f in res.faces]},
                             ensure_ascii=False), flush=True)
        frames += 1
        faces += len(res.faces)
        for f in res.faces:
            if f.name is None:
                unknown += 1
            else:
                names[f.name] += 1

    def offline(since: float | None) -> None:
        _note(f"note: {describe_offline(since)}; recognising from the local copy, "
              f"log rows are queued (frame {frames})" if since is not None
              else f"note: shared gallery back online (frame {frames})")

    def write_log() -> None:
        nonlocal flushed_at
        if journal is not None and time.monotonic() - flushed_at > LOG_FLUSH_S:
            logged.update(r.id for r in journal.flush(rec.store))
            flushed_at = time.monotonic()

    try:
        with _open_recognizer(args) as rec:
            journal = _watch_log(rec, settings, source, lambda: frames) if args.log else None
            # Between frames, follow what other processes (another window, the CLI, another
            # workstation) change in the gallery, as the window does: a person removed
            # meanwhile is no longer named, a renamed one is named anew.
            follower = GalleryFollower(rec, WATCH_REFRESH_S, on_offline=offline)
            stream = Stream(rec, source, report, follower=follower, housekeeping=write_log)
            try:
                stream.run(args.max_frames)
            except KeyboardInterrupt:
                interrupted = True
            finally:
                stream.close()
                if journal is not None:
                    logged.update(r.id for r in journal.flush(rec.store))
                    _note(f"recognition log: {len(logged)} appearance(s) written")
    finally:
        if stream is None:  # never taken over by a stream's reader thread, which releases it
            source.close()
    # Closing a shared store sends what it can; what is left waits in the local queue.
    queued = getattr(rec.store, "left_queued", 0)
    dt = time.perf_counter() - t0
    fps = frames / dt if dt > 0 else 0.0
    _note(f"{frames} frame(s) in {dt:.1f} s ({fps:.1f} fps processed; source "
          f"{source.fps:.1f} fps); {faces} face(s), {unknown} unknown"
          + ("; interrupted" if interrupted else ""))
    for name, n in names.most_common():
        _note(f"  {name}: {n} frame(s)")
    if queued:
        _note(f"recognition log: {queued} row(s) wait in this workstation's queue for the shared "
              "gallery (sent when it is back)")
    return EXIT_OK


def _watch_log(rec, settings: Settings, source, position: Callable[[], int]):  # noqa: ANN001, ANN202
    """The recognition log of a ``watch --log`` run (old rows pruned first).

    A file is processed faster or slower than it plays, so its appearances are timed
    by the video's own clock (frame number / fps, from the start of the run); a camera
    or stream by the real one.
    """
    from app.pipeline.recognition.appearances import AppearanceLog, prune

    try:
        prune(rec.store, settings.log_retention_days)
    except FacerecError as exc:  # e.g. a shared gallery that is offline: log on, prune later
        log.warning("recognition log not pruned: %s", exc)
    if source.is_live:
        return AppearanceLog(source.spec.describe())
    start, fps = time.time(), source.fps
    return AppearanceLog(source.spec.describe(), clock=lambda: start + position() / fps,
                         monotonic=lambda: position() / fps)


def cmd_log(args: argparse.Namespace) -> int:
    """Print the recognition log, newest first."""
    with _open_store(args) as store:  # a shared gallery's log, or this workstation's queue if offline
        rows = store.sightings(args.limit)
    if args.json:
        print(json.dumps([{
            "id": r.id, "name": r.name, "similarity": round(r.similarity, 4),
            "started": datetime.fromtimestamp(r.started, timezone.utc).isoformat(),
            "last_seen": datetime.fromtimestamp(r.last_seen, timezone.utc).isoformat(),
            "frames": r.frames, "source": r.source, "track": r.track, "station": r.station}
            for r in rows], ensure_ascii=False))
        return EXIT_OK
    if not rows:
        _note("the recognition log is empty (the desktop app and `facerec watch --log` write it)")
    for r in rows:
        when = datetime.fromtimestamp(r.started).strftime("%Y-%m-%d %H:%M:%S")
        who = r.name if r.name is not None else f"Unknown (track {r.track})" if r.track else "Unknown"
        print(f"{when}  {who}  {r.similarity:.3f}  {r.last_seen - r.started:.0f} s  {r.source}")
    return EXIT_OK


def _progress_bar(desc: str, unit: str):  # noqa: ANN202 - a tqdm bar and its update function
    from tqdm import tqdm

    bar = tqdm(total=0, desc=desc, unit=unit, disable=None, file=sys.stderr)

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.update(done - bar.n)

    return bar, progress


def _pct(x: float) -> str:
    return f"{100 * x:.2f} %"


def cmd_eval(args: argparse.Namespace) -> int:
    """Face verification metrics on a labelled pairs file."""
    from app.pipeline.imageio import load_image
    from app.pipeline.recognition.detector import FaceDetector
    from app.pipeline.recognition.embedder import FaceEmbedder
    from app.pipeline.recognition.recognizer import subject_face_embedding
    from app.pipeline.tools.evaluate import plot_report, read_pairs, verify_pairs, write_scores

    pairs_path = Path(args.pairs)
    pairs = read_pairs(pairs_path)
    images = Path(args.images) if args.images else pairs_path.parent
    if not images.is_dir():
        raise FacerecError(f"{images}: not a directory")
    settings = _settings(args)
    detector = FaceDetector(settings.detection_confidence)
    embedder = FaceEmbedder(settings.threads)
    bar, progress = _progress_bar("embedding", "image")
    try:
        report = verify_pairs(
            pairs, images, lambda p: subject_face_embedding(detector, embedder, load_image(p)),
            progress)
    finally:
        bar.close()
        detector.close()
    if args.plot:
        plot_report(report, Path(args.plot))
    if args.scores:
        write_scores(pairs, report, Path(args.scores))
    if args.json:
        print(json.dumps(report.to_json()))
        return EXIT_OK
    folds = (f" in {report.folds} folds" if report.folds else
             "; no folds: thresholds are set and measured on the same pairs (optimistic)")
    print(f"pairs            {report.scored_pairs} scored of {report.pairs} "
          f"({report.same_pairs} same, {report.different_pairs} different){folds}")
    if report.folds:
        print(f"accuracy         {report.accuracy_mean:.4f} ± {report.accuracy_std:.4f} "
              f"(threshold chosen on {report.folds - 1} folds, tested on the held-out one; "
              f"mean ± std over folds; thresholds {min(report.fold_thresholds):.3f}-"
              f"{max(report.fold_thresholds):.3f})")
    print(f"ROC AUC          {report.auc:.4f}" + (" (all pairs)" if report.folds else ""))
    print(f"best accuracy    {report.best_accuracy:.4f} at threshold {report.best_threshold:.3f}"
          + (" (threshold chosen on all pairs: optimistic)" if report.folds else ""))
    for t in report.tar_at:
        label = f"TAR @ FAR={100 * t.far:g}%"
        spread = f" ± {t.tar_std:.4f}" if t.tar_std is not None else ""
        print(f"{label:<17}{t.tar:.4f}{spread} at threshold {t.threshold:.3f}, measured FAR "
              f"{_pct(t.measured_far)}: {t.method}")
    print(f"no face found    {len(report.no_face)}"
          + (f": {', '.join(report.no_face[:10])}" if report.no_face else "")
          + (" ..." if len(report.no_face) > 10 else ""))
    if report.unreadable:
        print(f"unreadable       {len(report.unreadable)}: {', '.join(report.unreadable[:10])}"
              + (" ..." if len(report.unreadable) > 10 else ""))
    if args.plot:
        print(f"plot written to  {args.plot}")
    if args.scores:
        print(f"scores written to {args.scores}")
    return EXIT_OK


def cmd_embedding_mean(args: argparse.Namespace) -> int:
    """Make the mean embedding that facerec subtracts from every embedding."""
    import numpy as np

    from app.pipeline.models import EMBEDDING_MEAN, sha256_of
    from app.pipeline.recognition.detector import FaceDetector
    from app.pipeline.recognition.embedder import FaceEmbedder, save_mean
    from app.pipeline.tools.openset import mean_embedding

    settings = _settings(args)
    detector = FaceDetector(settings.detection_confidence)
    bar, progress = _progress_bar("embedding", "photo")
    try:
        result = mean_embedding(Path(args.folder), detector,
                                FaceEmbedder(settings.threads, centred=False), progress)
    finally:
        bar.close()
        detector.close()
    for line in result.skipped:
        log.info("skipped %s", line)
    if result.skipped:
        _note(f"note: {len(result.skipped)} photo(s) skipped (unreadable or no face); -v lists them")
    out = Path(args.out)
    try:
        save_mean(result.mean, out)
    except OSError as exc:
        raise FacerecError(f"{out}: cannot write ({exc.strerror})") from None
    digest = sha256_of(out)
    print(f"mean of {result.people} people ({result.photos} photos), length "
          f"{float(np.linalg.norm(result.mean)):.4f}, written to {out}")
    print(f"sha256 {digest}")
    if digest != EMBEDDING_MEAN.sha256:
        print(f"facerec checks this file against the SHA-256 pinned as EMBEDDING_MEAN in "
              f"app/pipeline/models.py ({EMBEDDING_MEAN.sha256[:12]}...): pin the new one there to "
              f"use it, then re-run facerec calibrate (README.md, 'Accuracy on LFW')")
    return EXIT_OK


def cmd_lfw_split(args: argparse.Namespace) -> int:
    """Write the seeded LFW open-set split (report and calibration)."""
    from app.pipeline.tools.lfw import SplitPlan, make_split

    plan = SplitPlan(enrolled=args.enrolled, fillers=args.fillers, strangers=args.strangers)
    manifest = make_split(Path(args.lfw_dir), Path(args.out_dir), args.seed, plan)
    for split, roles in manifest["counts"].items():
        parts = ", ".join(f"{role} {c['people']} people / {c['photos']} photos"
                          for role, c in roles.items())
        print(f"{split:<12} {parts}")
    if manifest["copied_instead_of_linked"]:
        _note(f"note: links were not allowed here; {manifest['copied_instead_of_linked']} files copied")
    if not manifest["mean_excludes_view2"]:
        _note("note: lfw_dir_names/pairs.txt is not in LFW_DIR, so calibration/mean may hold "
              "photos of View 2's pairs")
    print(f"written to {args.out_dir} (seed {args.seed}; every file chosen is in split.json)")
    return EXIT_OK


def _openset_probes(args: argparse.Namespace, settings: Settings, calibration=None):  # noqa: ANN001, ANN202
    """A Recognizer over a temporary data dir and the embedded open-set folders."""
    import tempfile

    from app.pipeline.recognition.recognizer import Recognizer
    from app.pipeline.tools.openset import embed_probes

    for d in (args.gallery, args.known, args.strangers):
        if not Path(d).is_dir():
            raise FacerecError(f"{d}: not a directory")
    tmp = tempfile.TemporaryDirectory(prefix="facerec-openset-")
    rec = Recognizer.open(Paths(Path(tmp.name) / "data"), settings, calibration=calibration)
    try:
        bar, progress = _progress_bar("embedding", "photo")
        try:
            probes = embed_probes(rec, Path(args.gallery), Path(args.known), Path(args.strangers),
                                  progress)
        finally:
            bar.close()
    except BaseException:
        rec.close()
        tmp.cleanup()
        raise
    for line in probes.skipped:
        log.info("skipped %s", line)
    if probes.skipped:
        _note(f"note: {len(probes.skipped)} photo(s) skipped (unreadable or no face); -v lists them")
    return tmp, rec, probes


def cmd_eval_openset(args: argparse.Namespace) -> int:
    """Open-set identification: enrolled people named right, strangers kept Unknown."""
    from app.pipeline.recognition.decision import Calibration, describe_target
    from app.pipeline.tools.openset import score_galleries, summarize

    settings = _settings(args)
    fixed = Calibration.fixed(args.fixed_threshold) if args.fixed_threshold is not None else None
    tmp, rec, probes = _openset_probes(args, settings, fixed)
    try:
        everyone = len(probes.gallery)
        sizes = sorted({min(n, everyone) for n in (args.sizes or [1, 10, 100, everyone])})
        bar, progress = _progress_bar("identifying", "gallery")
        try:
            scores = score_galleries(rec, probes, sizes, args.seed, Path(tmp.name),
                                     decide=True, progress=progress)
        finally:
            bar.close()
    finally:
        rec.close()
        tmp.cleanup()
    reports = [summarize(sc) for sc in scores]
    rule = (f"fixed similarity threshold {args.fixed_threshold:g}" if args.fixed_threshold is not None
            else f"settings: {describe_target(settings.false_accept)} may be named"
            + (f", minimum similarity {settings.min_similarity:g}" if settings.min_similarity else ""))
    if args.json:
        print(json.dumps({"rule": rule, "gallery_people": len(probes.gallery),
                          "known_probes": len(probes.known), "stranger_probes": len(probes.strangers),
                          "skipped": len(probes.skipped), "seed": args.seed,
                          "sizes": [r.to_json() for r in reports]}))
        return EXIT_OK
    print(f"gallery {len(probes.gallery)} people, {len(probes.known)} known probes, "
          f"{len(probes.strangers)} strangers; {rule}")
    print("rank-1: the best match is the right person (threshold ignored); named right / wrong "
          "name: share of known probes; strangers named: share of stranger probes; DIR @ FAR: "
          "named right at the threshold that names that share of strangers (BLUFR)")
    head = (f"{'people':>7} {'galleries':>9} {'rank-1':>8} {'named right':>12} {'wrong name':>11} "
            f"{'strangers named':>16} {'threshold':>10} " + " ".join(
                f"{'DIR@' + format(100 * f, 'g') + '%':>9}" for f in reports[0].dir_at_far))
    print(head)
    for r in reports:
        print(f"{r.size:>7} {r.galleries:>9} {_pct(r.rank1):>8} {_pct(r.named_right):>12} "
              f"{_pct(r.wrong_name):>11} {_pct(r.stranger_named):>16} {r.threshold:>10.3f} "
              + " ".join(f"{_pct(v):>9}" for v in r.dir_at_far.values()))
    return EXIT_OK


def cmd_calibrate(args: argparse.Namespace) -> int:
    """Fit the decision rule on a calibration split and write the calibration file."""
    from app.pipeline.recognition.decision import Calibration, describe_target
    from app.pipeline.tools.openset import (
        calibrate,
        calibration_sizes,
        calibration_source,
        score_galleries,
    )

    settings = _settings(args)
    # Raw matches are collected here; no decision is made, so the rule in force is
    # irrelevant (and a missing calibration file can be made afresh).
    tmp, rec, probes = _openset_probes(args, settings, Calibration.fixed(1.0))
    try:
        bar, progress = _progress_bar("identifying", "gallery")
        try:
            scores = score_galleries(rec, probes, calibration_sizes(len(probes.gallery)), args.seed,
                                     Path(tmp.name), decide=False, progress=progress)
        finally:
            bar.close()
    finally:
        rec.close()
        tmp.cleanup()
    command = _command_line(args)
    result = calibrate(scores, args.target,
                       calibration_source(probes, args.target, args.seed, command))
    cal = result.calibration
    print(f"runner-up weight: {cal.runner_up_weight:g} (mean named right at "
          f"{describe_target(args.target)}: "
          + ", ".join(f"{w:g} -> {_pct(g)}" for w, g in result.weights.items()) + ")")
    print(f"{'people':>7} {'galleries':>9} {'tail start':>10} {'tail scale':>10} {'threshold':>10} "
          f"{'named right':>12} {'wrong name':>11} {'strangers named':>16}")
    for r in result.table:
        print(f"{r['size']:>7.0f} {r['galleries']:>9.0f} {r['tail_start']:>10.4f} "
              f"{r['tail_scale']:>10.4f} {r['threshold']:>10.4f} {_pct(r['named_right']):>12} "
              f"{_pct(r['wrong_name']):>11} {_pct(r['stranger_false_accept']):>16}")
    if args.out:
        cal.save(Path(args.out))
        print(f"calibration written to {args.out}")
    else:
        print(json.dumps(cal.to_json(), indent=2))
    return EXIT_OK


def cmd_bench(args: argparse.Namespace) -> int:
    """Measure the pipeline, search and start-up on this machine."""
    from app.pipeline.tools import bench

    if args.store:
        from app.pipeline.recognition.embedder import default_threads
        from app.pipeline.tools import bench_shared

        shared = bench_shared.run(args.store, args.sizes or [100_000, 1_000_000],
                                  default_threads(), progress=lambda s: _note(f"bench: {s}"),
                                  generator=args.generator, index=args.index)
        if args.out:
            Path(args.out).write_text(bench_shared.to_markdown(shared), encoding="utf-8")
            _note(f"bench: wrote {args.out}")
        print(bench.dump(shared) if args.json else bench_shared.to_markdown(shared))
        return EXIT_OK
    ref = _read_bench_json(args.compare) if args.compare else None
    if args.load:
        results = _read_bench_json(args.load, whole=ref is None)
    else:
        beside_checkout = Path(__file__).resolve().parents[2] / "shared" / "testdata" / "deepface"
        photos = Path(args.photos) if args.photos else beside_checkout
        missing = [n for n in bench.SCENE_PHOTOS if not (photos / n).is_file()]
        if missing:
            raise UsageError(f"{photos}: the benchmark photos ({', '.join(missing)}) are not there; "
                             "pass --photos DIR (the shared deepface test set)")
        results = bench.run(photos, args.sizes or [1000, 10_000, 100_000, 1_000_000], quick=args.quick,
                            progress=lambda s: _note(f"bench: {s}"))
        results["command"] = _command_line(args)
    if args.save:
        Path(args.save).write_text(bench.dump(results) + "\n", encoding="utf-8")
        _note(f"bench: wrote {args.save}")
    if args.out:
        Path(args.out).write_text(bench.to_markdown(results), encoding="utf-8")
        _note(f"bench: wrote {args.out}")
    if not (args.load and ref is not None):  # two saved runs: only the comparison
        print(bench.dump(results) if args.json else bench.to_markdown(results))
    if ref is not None:
        # After the report, so `--json` output stays one JSON document up to this title.
        print(f"\n## Compared with {args.compare}\n")
        print(bench.compare(ref, results))
    return EXIT_OK


#: What a saved run needs to be reported again (`--load` without `--compare`).
_BENCH_KEYS = ("machine", "date", "streams", "tiles", "embed_threads", "startup", "search",
               "memory_bandwidth_gbs", "bench_peak_rss_mb")


def _read_bench_json(path: str, whole: bool = False) -> dict[str, Any]:
    """A saved ``facerec bench --json`` (or ``--save``) run; *whole*: every part of one."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise UsageError(f"{path}: not a saved benchmark run ({exc})") from None
    if not isinstance(data, dict) or "streams" not in data:
        raise UsageError(f"{path}: not a saved benchmark run (no 'streams')")
    missing = [k for k in _BENCH_KEYS if k not in data] if whole else []
    if missing:
        raise UsageError(f"{path}: not a whole saved benchmark run (no {', '.join(missing)})")
    return data


def _sizes(text: str) -> list[int]:
    try:
        sizes = [int(float(v)) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of numbers: {text!r}") from None
    if not sizes or min(sizes) < 10:
        raise argparse.ArgumentTypeError("gallery sizes must be at least 10")
    return sizes


def cmd_self_test(args: argparse.Namespace) -> int:
    """Check that this installation works: models, inference, a store. Exit 0 only if so."""
    import tempfile

    import numpy as np

    from app.pipeline.imageio import load_image
    from app.pipeline.models import DETECTOR, EMBEDDER, EMBEDDING_MEAN, models_dir, verified_model
    from app.pipeline.recognition.align import CROP_SIZE, EMBEDDING_VERSION
    from app.pipeline.recognition.decision import CALIBRATION_FILE, load_calibration
    from app.pipeline.recognition.detector import FaceDetector
    from app.pipeline.recognition.embedder import FaceEmbedder, load_mean
    from app.pipeline.recognition.recognizer import largest_face_embedding
    from app.pipeline.storage.store import FaceStore
    from app.pipeline.types import EMBEDDING_DIM, NewFace

    failures = 0

    def check(label: str, fn) -> object:  # type: ignore[no-untyped-def]
        nonlocal failures
        t0 = time.perf_counter()
        try:
            value = fn()
        except Exception as exc:  # report every failure, then the verdict
            failures += 1
            print(f"FAIL  {label}: {exc}")
            return None
        print(f"ok    {label} ({(time.perf_counter() - t0) * 1000:.0f} ms)")
        return value

    print(f"facerec {__version__}, models in {models_dir()}")
    check(f"model {DETECTOR.filename} verified", lambda: verified_model(DETECTOR))
    check(f"model {EMBEDDER.filename} verified", lambda: verified_model(EMBEDDER))
    check(f"mean embedding {EMBEDDING_MEAN.filename} verified", load_mean)

    def calibration_matches() -> None:
        made_for = load_calibration().source.get("embedding_version")
        if made_for != EMBEDDING_VERSION:
            raise RuntimeError(f"made for embeddings {made_for!r}, these are {EMBEDDING_VERSION!r}; "
                               "re-run facerec calibrate (README.md, 'Accuracy on LFW')")
    check(f"decision rule calibration {CALIBRATION_FILE} loads, made for these embeddings",
          calibration_matches)
    detector = check("face detector loads", FaceDetector)
    embedder = check("face embedder loads", FaceEmbedder)
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
    if detector is not None:
        check("detection runs on a synthetic 640x480 frame", lambda: detector.detect(frame))
    if embedder is not None:
        def synthetic_embedding() -> None:
            v = embedder.embed(frame[:CROP_SIZE, :CROP_SIZE])
            if v.shape != (1, EMBEDDING_DIM) or not np.isfinite(v).all() or abs(np.linalg.norm(v) - 1) > 1e-3:
                raise RuntimeError(f"bad embedding: shape {v.shape}")
        check("embedding runs on a synthetic 160x160 crop", synthetic_embedding)
    if args.image and detector is not None and embedder is not None:
        def real_image() -> None:
            if largest_face_embedding(detector, embedder, load_image(args.image)) is None:
                raise RuntimeError(f"no face found in {args.image}")
        check(f"face found and embedded in {args.image}", real_image)

    def store_round_trip() -> None:
        with tempfile.TemporaryDirectory() as tmp, FaceStore(Path(tmp) / "faces.db") as store:
            store.add_faces("Self Test", [NewFace(rng.standard_normal(EMBEDDING_DIM).astype(np.float32))])
            if [p.name for p in store.people()] != ["Self Test"]:
                raise RuntimeError("store did not read back what was written")
    check("store opens, writes and reads in a temp dir", store_round_trip)
    if detector is not None:
        detector.close()
    print("self-test passed" if not failures else f"self-test FAILED ({failures} check(s))")
    return EXIT_OK if not failures else EXIT_FAIL


#: The longest passphrase file read (a passphrase is a line, not a document).
MAX_PASSPHRASE_BYTES = 4096


def _passphrase_file(name: str) -> str:
    """The passphrase in a file: UTF-8 text (a BOM and the trailing line end dropped)."""
    try:
        with open(name, "rb") as f:
            raw = f.read(MAX_PASSPHRASE_BYTES + 1)  # bounded: /dev/zero must not fill memory
    except OSError as exc:
        raise FacerecError(f"{name}: cannot read ({exc.strerror or exc})") from None
    if len(raw) > MAX_PASSPHRASE_BYTES:
        raise UsageError(f"{name} is not a passphrase file: it is longer than "
                         f"{MAX_PASSPHRASE_BYTES} bytes")
    try:
        text = raw.decode("utf-8").removeprefix("\ufeff").rstrip("\r\n")
    except UnicodeDecodeError:
        raise UsageError(f"{name} is not UTF-8 text: save the passphrase as UTF-8") from None
    if "\0" in text:
        raise UsageError(f"{name} is not a passphrase file: it holds NUL bytes")
    if not text:
        raise UsageError(f"{name} is empty")
    return text


def _passphrase(args: argparse.Namespace, confirm: bool) -> str | None:
    """The passphrase from --passphrase-file, $FACEREC_PASSPHRASE, or a prompt."""
    if getattr(args, "passphrase_file", None) is not None:
        return _passphrase_file(args.passphrase_file)
    if os.environ.get("FACEREC_PASSPHRASE"):
        return os.environ["FACEREC_PASSPHRASE"]
    if not sys.stdin.isatty():
        raise UsageError("a passphrase is needed: use --passphrase-file FILE or FACEREC_PASSPHRASE")
    import getpass

    first = getpass.getpass("Passphrase: ")
    if confirm and getpass.getpass("Repeat passphrase: ") != first:
        raise UsageError("the passphrases differ")
    if not first:
        raise UsageError("the passphrase cannot be empty")
    return first


def cmd_backup(args: argparse.Namespace) -> int:
    """Write the whole gallery to one file, optionally encrypted.

    A passphrase file asks for encryption by itself: a backup is never written in
    plaintext when the user handed over a passphrase.
    """
    from app.pipeline.storage.backup import write_backup
    from app.pipeline.storage.store import is_url

    if not args.file:
        raise UsageError("give the backup a file name: facerec backup FILE")
    encrypt = args.encrypt or args.passphrase_file is not None
    secret = _passphrase(args, confirm=True) if encrypt else None
    location = _location(args)
    if is_url(location):
        from app.pipeline.storage.pgstore import PostgresStore

        with PostgresStore(str(location), migrate=False) as store:
            header = write_backup(store, Path(args.file), secret, scratch=args.paths.ensure().root)
    else:
        header = write_backup(args.paths.db, Path(args.file), secret)
    how = "encrypted (AES-256-GCM, scrypt)" if header.get("encrypted") else "not encrypted"
    print(f"backup written to {args.file} ({header['size']} bytes of store, {how})")
    return EXIT_OK


def cmd_restore(args: argparse.Namespace) -> int:
    """Replace this data directory's gallery with a backup."""
    from app.pipeline.storage.backup import backup_header, restore_backup

    if not args.file:
        raise UsageError("give the backup file: facerec restore FILE")
    path = Path(args.file)
    # The header is checked first (a regular file, a backup, the right size): nothing
    # else, not even a passphrase prompt, for a file that cannot be one.
    secret = _passphrase(args, confirm=False) if backup_header(path).get("encrypted") else None
    args.paths.ensure()
    location = _location(args)
    from app.pipeline.storage.store import is_url

    if is_url(location):
        from app.pipeline.storage.backup import restore_into
        from app.pipeline.storage.pgstore import PostgresStore

        with PostgresStore(str(location)) as store:
            people = restore_into(path, store, secret, replace=args.replace, scratch=args.paths.root)
    else:
        people = restore_backup(path, args.paths.db, args.paths.index, secret,
                                replace=args.replace, notify=_note)
    print(f"restored {people} people from {args.file}")
    return EXIT_OK


def cmd_migrate(args: argparse.Namespace) -> int:
    """Copy this data directory's gallery into a shared store, or a shared store into it."""
    from app.pipeline.storage.pgstore import PostgresStore
    from app.pipeline.storage.store import FaceStore, is_url, merge_into

    url = args.to or args.from_
    if not is_url(url):
        raise UsageError(f"{url!r} is not a database URL (postgresql://...)")
    local_db = args.paths.ensure().db
    if args.to and not local_db.exists():
        raise FacerecError(f"no local gallery at {local_db}: nothing to copy")
    with FaceStore(local_db) as local, PostgresStore(url) as shared:
        source, target = (local, shared) if args.to else (shared, local)
        dump = source.dump()
        report = merge_into(target, dump)
    print(f"copied {len(dump.people)} people and {len(dump.faces)} face(s) from {source.label} "
          f"to {target.label}: {report.people_created} people and {report.faces_added} face(s) "
          f"added, {report.faces_present} already there, {report.sightings} log row(s); "
          f"verified: it holds {report.people_total} people and {report.faces_total} face(s)")
    return EXIT_OK


def cmd_setup(args: argparse.Namespace) -> int:
    """Create or upgrade a shared store's schema and its two roles."""
    from app.pipeline.storage.pgstore import PostgresStore
    from app.pipeline.storage.store import is_url

    location = _location(args)
    if not is_url(location):
        raise UsageError("setup needs a shared gallery: facerec --store postgresql://... setup")
    with PostgresStore(str(location)) as store:
        for line in store.setup():
            print(line)
        print(f"the shared gallery {store.label} is ready (schema and roles)")
    return EXIT_OK


def cmd_gui(args: argparse.Namespace) -> int:
    """Start the desktop app."""
    try:
        from app.ui.app import run
    except ImportError as exc:
        _err(f"the desktop app is not available in this installation ({exc})")
        return EXIT_USAGE
    return int(run(args.paths, source=getattr(args, "source", None), verbosity=args.verbose))


# -- parser --------------------------------------------------------------------------

class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        _err(message)
        raise SystemExit(EXIT_USAGE)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (public so tests and docs can introspect it)."""
    p = _Parser(prog="facerec", description="On-device face recognition.")
    p.add_argument("--version", action="version", version=f"facerec {__version__}")
    p.add_argument("--data-dir", metavar="DIR",
                   help="where the store lives (default: $FACEREC_HOME, else the user data dir)")
    p.add_argument("--store", metavar="URL",
                   help="a shared gallery, postgresql://[user@]host[:port]/db (default: "
                        "$FACEREC_STORE, the settings, else the SQLite store in the data dir); "
                        "the password comes from the URL, ~/.pgpass or a service file")
    p.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    force_help = ("save faces that fail the same-person checks too (they look unlike the "
                  "person's other faces, or like someone else)")
    s = sub.add_parser("enroll", help="add the largest face of each image to NAME")
    s.add_argument("name", metavar="NAME")
    s.add_argument("images", metavar="IMAGE", nargs="+")
    s.add_argument("--force", action="store_true", help=force_help)
    s.set_defaults(func=cmd_enroll)

    s = sub.add_parser("import", help="import DIR with one subfolder of photos per person")
    s.add_argument("dir", metavar="DIR")
    s.add_argument("--force", action="store_true", help=force_help)
    s.set_defaults(func=cmd_import)

    s = sub.add_parser("people", help="list enrolled people")
    s.add_argument("--json", action="store_true", help="print JSON")
    s.set_defaults(func=cmd_people)

    s = sub.add_parser("rename", help="rename a person")
    s.add_argument("old", metavar="OLD")
    s.add_argument("new", metavar="NEW")
    s.set_defaults(func=cmd_rename)

    s = sub.add_parser("remove", help="delete a person and all their faces")
    s.add_argument("name", metavar="NAME")
    s.set_defaults(func=cmd_remove)

    s = sub.add_parser("faces", help="list a person's faces with their ids")
    s.add_argument("name", metavar="NAME")
    s.add_argument("--json", action="store_true", help="print JSON")
    s.set_defaults(func=cmd_faces)

    s = sub.add_parser("remove-face", help="delete single faces by id (see: facerec faces NAME)")
    s.add_argument("ids", metavar="ID", type=_positive_int, nargs="+")
    s.set_defaults(func=cmd_remove_face)

    s = sub.add_parser("move-face", help="give faces (by id) to another person")
    s.add_argument("ids", metavar="ID", type=_positive_int, nargs="+")
    s.add_argument("--to", metavar="NAME", required=True,
                   help="the person to give them to (created if missing)")
    s.add_argument("--force", action="store_true", help=force_help)
    s.set_defaults(func=cmd_move_face)

    s = sub.add_parser("identify", help="name the faces in images")
    s.add_argument("images", metavar="IMAGE", nargs="+")
    s.add_argument("--json", action="store_true", help="print one JSON array")
    s.set_defaults(func=cmd_identify)

    s = sub.add_parser("watch", help="recognise faces in a camera, video file or stream")
    s.add_argument("source", metavar="SOURCE", help="camera index, video file or stream URL")
    s.add_argument("--json", action="store_true", help="one JSON object per frame")
    s.add_argument("--max-frames", type=_positive_int, metavar="N", help="stop after N frames")
    s.add_argument("--log", action="store_true",
                   help="write appearances to the recognition log (see: facerec log); with a "
                        "shared gallery they are queued here while it is offline")
    s.set_defaults(func=cmd_watch)

    s = sub.add_parser("log", help="print the recognition log, newest first")
    s.add_argument("--json", action="store_true", help="print JSON")
    s.add_argument("--limit", type=_positive_int, default=100, metavar="N",
                   help="at most N rows (default 100)")
    s.set_defaults(func=cmd_log)

    s = sub.add_parser("eval", help="verification metrics on a pairs file (CSV or LFW pairs.txt)")
    s.add_argument("pairs", metavar="PAIRS", help="file_x,file_y,Decision CSV, or LFW's pairs.txt")
    s.add_argument("--images", metavar="DIR", help="image folder (default: the pairs file's folder)")
    s.add_argument("--json", action="store_true", help="print JSON")
    s.add_argument("--plot", metavar="FILE.png", help="write the ROC curve and histograms")
    s.add_argument("--scores", metavar="FILE.csv", help="write every pair's score (and fold)")
    s.set_defaults(func=cmd_eval)

    s = sub.add_parser("eval-openset", help="open-set identification: known people and strangers")
    _openset_args(s)
    s.add_argument("--sizes", type=_people_sizes, metavar="N,N,...",
                   help="gallery sizes to draw (default: 1,10,100 and the whole gallery)")
    s.add_argument("--fixed-threshold", type=float, metavar="SIM",
                   help="decide by a fixed similarity threshold instead of the settings "
                        "(how facerec decided before the calibrated rule)")
    s.add_argument("--json", action="store_true", help="print JSON")
    s.set_defaults(func=cmd_eval_openset)

    s = sub.add_parser("calibrate", help="fit the decision rule on a calibration split")
    _openset_args(s)
    s.add_argument("--target", type=float, default=DEFAULT_FALSE_ACCEPT, metavar="RATE",
                   help=f"false-accept target the runner-up weight is chosen at (default "
                        f"{DEFAULT_FALSE_ACCEPT:g})")
    s.add_argument("--out", metavar="FILE.json", help="write the calibration here "
                   "(models/calibration.json is the one facerec uses); default: print it")
    s.set_defaults(func=cmd_calibrate)

    s = sub.add_parser("embedding-mean",
                       help="make the mean embedding facerec subtracts (models/facenet512_mean.npy)")
    s.add_argument("folder", metavar="DIR", help="one subfolder of photos per person "
                   "(lfw-split's calibration/mean)")
    s.add_argument("--out", required=True, metavar="FILE.npy",
                   help="where to write it (models/facenet512_mean.npy is the one facerec uses)")
    s.set_defaults(func=cmd_embedding_mean)

    s = sub.add_parser("lfw-split", help="write the seeded LFW open-set split")
    s.add_argument("lfw_dir", metavar="LFW_DIR",
                   help="the LFW repository (with images_deepfunneled/) or its image folder")
    s.add_argument("out_dir", metavar="OUT_DIR", help="where to write it (empty or absent)")
    s.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    s.add_argument("--enrolled", type=_positive_int, default=600, metavar="N",
                   help="people enrolled with 2 photos and probed with up to 3 others (default 600)")
    s.add_argument("--fillers", type=_count, default=400, metavar="N",
                   help="more people with exactly 2 photos, enrolled only (default 400)")
    s.add_argument("--strangers", type=_count, default=2000, metavar="N",
                   help="one-photo people never enrolled (default 2000)")
    s.set_defaults(func=cmd_lfw_split)

    s = sub.add_parser("backup", help="write the whole gallery to one file")
    s.add_argument("file", metavar="FILE")
    s.add_argument("--encrypt", action="store_true",
                   help="encrypt with a passphrase (prompted, or --passphrase-file, or "
                        "$FACEREC_PASSPHRASE)")
    s.add_argument("--passphrase-file", metavar="FILE",
                   help="read the passphrase from FILE (UTF-8, one line); implies --encrypt")
    s.set_defaults(func=cmd_backup)

    s = sub.add_parser("restore", help="replace the gallery with a backup file")
    s.add_argument("file", metavar="FILE")
    s.add_argument("--replace", action="store_true",
                   help="overwrite people already here (a damaged store is kept, renamed)")
    s.add_argument("--passphrase-file", metavar="FILE", help="read the passphrase from FILE")
    s.set_defaults(func=cmd_restore)

    s = sub.add_parser("migrate", help="copy the local gallery into a shared one, or back")
    way = s.add_mutually_exclusive_group(required=True)
    way.add_argument("--to", metavar="URL", help="copy this data directory's gallery into URL")
    way.add_argument("--from", dest="from_", metavar="URL",
                     help="copy the gallery at URL into this data directory")
    s.set_defaults(func=cmd_migrate)

    s = sub.add_parser("setup", help="create a shared gallery's schema and its two roles")
    s.set_defaults(func=cmd_setup)

    s = sub.add_parser("bench", help="measure speed per stage, search and start-up")
    s.add_argument("--json", action="store_true", help="print JSON instead of Markdown")
    s.add_argument("--out", metavar="FILE.md", help="also write the Markdown report here")
    s.add_argument("--photos", metavar="DIR", help="the shared deepface photos (default: "
                   "../shared/testdata/deepface beside the checkout)")
    s.add_argument("--sizes", type=_sizes, default=None, metavar="N,N,...",
                   help="gallery sizes for the search benchmark (default 1000,10000,100000,"
                        "1000000; with --store: 100000,1000000 in the shared gallery, which "
                        "must be an empty database: it is overwritten)")
    s.add_argument("--quick", action="store_true", help="fewer frames and repeats")
    s.add_argument("--save", metavar="FILE.json", help="also write the raw results here")
    s.add_argument("--compare", metavar="REF.json",
                   help="then print this run against a saved one, stage by stage")
    s.add_argument("--load", metavar="RUN.json",
                   help="report a saved run instead of measuring (with --compare: two saved runs)")
    # The choices of app.pipeline.tools.bench.GENERATORS and pgstore.INDEX_KINDS (not imported
    # here: the CLI starts without numpy).
    s.add_argument("--generator", choices=("faces", "uniform"), default="faces",
                   help="with --store: synthetic faces drawn from real embeddings' statistics "
                        "(default), or uniform random identities (the old, harder case)")
    s.add_argument("--index", choices=("halfvec", "vector", "bq"), default="halfvec",
                   help="with --store: what the HNSW index is built on (default halfvec)")
    s.set_defaults(func=cmd_bench)

    s = sub.add_parser("self-test", help="check that models, inference and storage work")
    s.add_argument("image", metavar="IMAGE", nargs="?", help="also find a face in this photo")
    s.set_defaults(func=cmd_self_test)

    s = sub.add_parser("gui", help="start the desktop app (the default)")
    s.add_argument("--source", metavar="SRC", help="camera index, video file or stream URL")
    s.set_defaults(func=cmd_gui)
    return p


def _openset_args(s: argparse.ArgumentParser) -> None:
    s.add_argument("gallery", metavar="GALLERY_DIR", help="one subfolder of photos per enrolled person")
    s.add_argument("--known", metavar="DIR", required=True,
                   help="probe photos of enrolled people, one subfolder per person")
    s.add_argument("--strangers", metavar="DIR", required=True,
                   help="probe photos of people never enrolled, one subfolder per person")
    s.add_argument("--seed", type=int, default=0, help="seed for drawing galleries (default 0)")


def _people_sizes(text: str) -> list[int]:
    try:
        sizes = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of whole numbers: {text!r}") from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError("gallery sizes must be at least 1")
    return sizes


def _whole_number(minimum: int):  # noqa: ANN202 - an argparse type
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}")
        return value
    return parse


_positive_int, _count = _whole_number(1), _whole_number(0)


def _command_line(args: argparse.Namespace) -> str:
    """The command as typed (quoted for a shell), to record how a result was made."""
    return " ".join(["facerec", *(shlex.quote(a) for a in args.argv)])


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else map(str, argv))
    if args.data_dir is not None and not args.data_dir.strip():
        parser.error("--data-dir is empty: give a directory (or leave the option out to use "
                     "the default)")
    try:
        # A data directory that cannot be ours is refused before settings are read.
        args.paths = Paths.resolve(args.data_dir).check()
    except FacerecError as exc:
        _err(str(exc))
        return EXIT_FAIL
    except (OSError, RuntimeError) as exc:
        _err(f"cannot resolve the data directory: {exc}")
        return EXIT_FAIL
    if args.command is None:
        args.func = cmd_gui
    if args.store and args.func is cmd_gui:
        # --store wins over FACEREC_STORE; through the environment it reaches the window's
        # worker thread (the other commands pass it on themselves).
        from app.config import ENV_STORE

        os.environ[ENV_STORE] = args.store
    # Commands that change the store keep a log file in the data directory; the GUI sets
    # up its own; read-only commands only print.
    writes = args.command in ("enroll", "import", "rename", "remove", "remove-face", "move-face",
                              "migrate", "setup")
    setup_logging(args.paths.logs if writes else None, args.verbose)
    from app.pipeline.storage.store import is_url

    location = _location(args)
    if is_url(location) and args.command not in ("bench", "eval", "self-test"):
        from app.pipeline.storage.pgstore import mask_url

        _note(f"shared gallery: {mask_url(str(location))}")
    try:
        return int(args.func(args))
    except FacerecError as exc:
        _err(str(exc))
        return EXIT_FAIL
    except UsageError as exc:
        _err(str(exc))
        return EXIT_USAGE
    except KeyboardInterrupt:
        _err("interrupted")
        return 130
    except BrokenPipeError:
        # stdout closed early (e.g. piped into head): not an error of ours.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK
    except Exception as exc:  # a bug: log it fully, tell the user one line
        log.debug("unexpected error", exc_info=True)
        _err(f"unexpected {type(exc).__name__}: {exc} (run with -vv for details)")
        if args.verbose >= 2:
            raise
        return EXIT_FAIL
