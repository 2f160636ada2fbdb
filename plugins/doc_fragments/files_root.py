# Copyright: CertAutoPilot contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    # The confinement of the file options, for every module whose action plugin reads files on the controller.
    DOCUMENTATION = r"""
options:
  files_root:
    description:
      - A directory on the B(controller) that every file option of the task (O(private_key_file),
        O(certificate_file), O(chain_file), and those of each item) must lie in. Symlinks and C(..) are resolved
        first, so a link or a C(../) that leads out of it is refused; a relative path is taken from it (no search
        path is used).
      - Set it whenever the file paths come from people who should not read every file of the controller
        user (an AWX survey, a vars file others write). Without it a file option may name any file that user can
        read; only what the option names is taken from it (one private key, certificates), but that may be another
        certificate's key, which O(validate=false) would then store unchecked.
      - A refusal names the option and its item, never the path or the file's text.
      - The file is opened once and judged on what was opened, so a name swapped for a symlink or a FIFO after the
        check (by someone who may write inside the root) is refused, never followed or waited on.
    type: path
"""
