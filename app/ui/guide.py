"""Help → User guide: the few things a new user needs, in one short page."""

from __future__ import annotations

from PySide6.QtCore import QSize
from PySide6.QtWidgets import QDialog, QDialogButtonBox, QTextBrowser, QVBoxLayout, QWidget

from app.ui.screen import fit_to_screen

GUIDE_HTML = """
<h2>facerec in five minutes</h2>
<p>facerec names the people it knows in the live view and shows everyone else as
<b>Unknown</b>. Nothing leaves this computer.</p>

<h3>Enroll someone</h3>
<ol>
<li><b>People → Enroll person…</b> (Ctrl+E) and type the name.</li>
<li>Add faces: <b>Take snapshot</b> while they look at the camera and hold still, or
<b>Add photos…</b>, or drop photo files on the dialog. Three to five photos from
different days, light and angles work best.</li>
<li>Each face is checked: exactly one face, large and sharp enough, and like the
person's other faces. A face marked with a warning does not look like them, or looks
like someone already enrolled: <b>Drop</b> it, or <b>Keep</b> it if you are sure.</li>
<li><b>Save</b>. The live view knows them at once.</li>
</ol>

<h3>Correct a mistake</h3>
<ul>
<li>In the live view, right-click a face: <b>This is…</b> picks the right person (or a
new one) and adds this face to them, after the same checks; <b>Not …</b> stops showing
a wrong name. The face keeps the corrected name while it stays in view.</li>
<li><b>People → Manage people…</b> (Ctrl+P) shows every face of a person; a face
flagged as unlike the others is probably a wrong photo: <b>Remove</b> it or
<b>Move</b> it to the right person. Select a person and press Delete to remove them.</li>
<li>After an upgrade, faces enrolled by an older version of facerec are marked ⚠ and
not used: add new photos of those people, then remove their old faces.</li>
</ul>

<h3>Tune how strict recognition is</h3>
<p><b>Tools → Settings…</b> (Ctrl+,). A stricter setting shows fewer wrong names and
more Unknowns; a looser one names more faces and risks naming the wrong person.
Keep the default unless you have a reason. To see how close an Unknown face came,
turn on <i>Show the best candidate of Unknown faces</i> in the Expert group.</p>

<h3>Back up</h3>
<p>Everything lives in one data folder (Help → Open log folder shows where). From a
terminal: <code>facerec backup gallery.frb --encrypt</code> writes the whole gallery to
one encrypted file; <code>facerec restore gallery.frb --replace</code> brings it back,
also on another computer.</p>

<h3>Handy keys</h3>
<p>Space pause / resume a video · Ctrl+S save the frame with its boxes · F11 full
screen · Ctrl+. stop · Ctrl+R start.</p>
"""


class GuideDialog(QDialog):
    """The short user guide."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("guideDialog")
        self.setWindowTitle("facerec user guide")
        self.text = QTextBrowser()
        self.text.setOpenExternalLinks(True)
        self.text.setHtml(GUIDE_HTML)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(self.text, 1)
        layout.addWidget(buttons)
        fit_to_screen(self, QSize(620, 680))
