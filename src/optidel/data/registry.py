"""Registry of the public medical segmentation datasets named in the OptiDEL/MedDEL papers, plus BUSI and DRIVE.

Each :class:`DatasetSpec` says where the official archive lives, what is known of its checksum and terms of use, and
which converter (:mod:`optidel.data.convert`) maps it to optidel's standard layout. ``optidel data fetch NAME --root
DIR`` (:mod:`optidel.data.fetch`) uses it.

What is and is not verified (checked against the datasets' own pages where this could be done offline; see the
``notes`` field of each entry):

- No publisher of these datasets publishes a checksum, so every ``sha256`` is ``None``: fetch then warns and prints
  the sha256 it computed, which you can pin with ``--sha256`` (or by editing the spec).
- Datasets without a direct public download (registration, request by e-mail, or RAR archives that the Python
  standard library cannot open) have ``download == "manual"``: fetch explains where to get them and accepts the
  downloaded archive or its extracted folder with ``--archive``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from optidel.data import convert
from optidel.data.convert import Converter
from optidel.runtime.errors import OptidelError


@dataclass(frozen=True)
class DatasetSpec:
    """One dataset: where to get it, under which terms, and how to convert it.

    Attributes:
        name: registry key and folder name under ``--root`` (lower-case, hyphenated).
        title: the dataset's own name.
        modality: imaging modality and target.
        homepage: the official page.
        licence: terms of use, in short (read the homepage for the full text).
        citation: the paper to cite.
        converter: ``(src, out) -> ConversionSummary`` mapping the extracted archive to the standard layout.
        download: ``"direct"`` when ``urls`` is a public direct download, ``"manual"`` otherwise.
        urls: official direct download URLs, first one used (mirrors go through ``--url``).
        sha256: expected sha256 of the archive, ``None`` when unknown.
        archive_format: ``"zip"``, ``"tar.gz"``, ``"rar"`` or ``None`` (unknown / varies).
        archive_name: file name the download is saved under.
        expected_pairs: image/mask pairs in the official release (a warning is logged when a conversion differs).
        layout: what the archive (or the folder given with ``--archive``) must contain.
        manual_instructions: for ``download == "manual"``: where and how to obtain the data.
        aliases: other names accepted by :func:`get_dataset`.
        notes: what could not be verified, and other remarks.
    """

    name: str
    title: str
    modality: str
    homepage: str
    licence: str
    citation: str
    converter: Converter
    download: Literal["direct", "manual"]
    layout: str
    urls: tuple[str, ...] = ()
    sha256: str | None = None
    archive_format: str | None = None
    archive_name: str | None = None
    expected_pairs: int | None = None
    manual_instructions: str = ""
    aliases: tuple[str, ...] = field(default_factory=tuple)
    notes: str = ""

    def manual_message(self, root: str = "DIR") -> str:
        """The message shown when this dataset has to be downloaded by hand."""
        return (
            f"{self.title} has no direct public download that optidel can fetch.\n"
            f"Where to get it: {self.manual_instructions}\n"
            f"Then run: optidel data fetch {self.name} --root {root} --archive LOCAL_FILE_OR_FOLDER\n"
            f"LOCAL_FILE_OR_FOLDER is the downloaded .zip/.tar(.gz) or the folder you extracted it to, holding: "
            f"{self.layout}\n"
            f"Terms: {self.licence}"
        )


_SIMULA_TERMS = (
    "Research and education only; commercial use needs prior written permission from Simula; "
    "publications must cite the dataset paper."
)

_SPECS = (
    DatasetSpec(
        name="kvasir-seg",
        title="Kvasir-SEG",
        modality="colonoscopy, polyp segmentation",
        homepage="https://datasets.simula.no/kvasir-seg/",
        licence=_SIMULA_TERMS,
        citation=(
            "Jha D, Smedsrud PH, Riegler MA, Halvorsen P, de Lange T, Johansen D, Johansen HD. Kvasir-SEG: A Segmented "
            "Polyp Dataset. MultiMedia Modeling (MMM) 2020, LNCS 11962, 451-462. doi:10.1007/978-3-030-37734-2_37"
        ),
        converter=convert.convert_kvasir_seg,
        download="direct",
        urls=("https://datasets.simula.no/downloads/kvasir-seg.zip",),
        archive_format="zip",
        archive_name="kvasir-seg.zip",
        expected_pairs=1000,
        layout="Kvasir-SEG/images/<id>.jpg, Kvasir-SEG/masks/<id>.jpg, Kvasir-SEG/kavsir_bboxes.json",
        aliases=("kvasir", "kvasir_seg", "kvasirseg"),
        notes=(
            "URL and size (44.1 MB) from the Simula dataset page; sha256 unknown. splits.csv: the PraNet split "
            "(100 test ids) shipped in optidel/data/splits/kvasir-seg.csv."
        ),
    ),
    DatasetSpec(
        name="kvasir-instrument",
        title="Kvasir-Instrument",
        modality="gastrointestinal endoscopy, tool segmentation",
        homepage="https://datasets.simula.no/kvasir-instrument/",
        licence=_SIMULA_TERMS,
        citation=(
            "Jha D, Ali S, Emanuelsen K, Hicks SA, Thambawita V, Garcia-Ceja E, Riegler MA, de Lange T, Schmidt PT, "
            "Johansen HD, Johansen D, Halvorsen P. Kvasir-Instrument: Diagnostic and Therapeutic Tool Segmentation "
            "Dataset in Gastrointestinal Endoscopy. MMM 2021, 218-229. doi:10.1007/978-3-030-67835-7_19"
        ),
        converter=convert.convert_kvasir_instrument,
        download="direct",
        urls=("https://datasets.simula.no/downloads/kvasir-instrument.zip",),
        archive_format="zip",
        archive_name="kvasir-instrument.zip",
        expected_pairs=590,
        layout=(
            "kvasir-instrument/{images.tar.gz (images/<id>.jpg), masks.tar.gz (masks/<id>.png), bboxes.json, "
            "train.txt, test.txt}"
        ),
        aliases=("kvasir_instrument", "kvasirinstrument"),
        notes=(
            "URL and size (170 MB) from the Simula dataset page; also on OSF (https://osf.io/kp6my). sha256 unknown. "
            "Inner layout (tarballs, .jpg images, .png masks, train.txt/test.txt: 472/118) taken from public "
            "preparation scripts, not checked against the archive."
        ),
    ),
    DatasetSpec(
        name="cvc-clinicdb",
        title="CVC-ClinicDB (CVC-612)",
        modality="colonoscopy, polyp segmentation",
        homepage="https://polyp.grand-challenge.org/CVCClinicDB/",
        licence=(
            "Research use as stated on the challenge page; publications must cite Bernal et al. 2015 "
            "(terms not re-checked here)."
        ),
        citation=(
            "Bernal J, Sanchez FJ, Fernandez-Esparrach G, Gil D, Rodriguez C, Vilarino F. WM-DOVA maps for accurate "
            "polyp highlighting in colonoscopy: Validation vs. saliency maps from physicians. Computerized Medical "
            "Imaging and Graphics 43:99-111, 2015."
        ),
        converter=convert.convert_paired_folders,
        download="manual",
        archive_format="rar",
        expected_pairs=612,
        layout="Original/<n>.tif and 'Ground Truth'/<n>.tif (some copies: PNG/ and TIF/ each holding both; PNG is used)",
        manual_instructions=(
            "the download link on https://polyp.grand-challenge.org/CVCClinicDB/ (a Dropbox file CVC-ClinicDB.rar). "
            "It is a RAR archive, which optidel cannot open: extract it (unrar x / 7z x) and pass the extracted folder."
        ),
        aliases=("clinicdb", "cvc-612", "cvc612", "cvc_clinicdb"),
        notes="No official split. The Dropbox link is the one cited by many papers; not fetched automatically (RAR).",
    ),
    DatasetSpec(
        name="cvc-colondb",
        title="CVC-ColonDB",
        modality="colonoscopy, polyp segmentation",
        homepage="http://mv.cvc.uab.es/projects/colon-qa/cvccolondb",
        licence="Available on request from the Computer Vision Center (UAB) for research; cite Bernal et al. 2012.",
        citation=(
            "Bernal J, Sanchez J, Vilarino F. Towards automatic polyp detection with a polyp appearance model. "
            "Pattern Recognition 45(9):3166-3182, 2012."
        ),
        converter=convert.convert_paired_folders,
        download="manual",
        expected_pairs=380,
        layout=(
            "either the original release (one folder of <n>.bmp images with p<n>.bmp polyp masks; s<n>/c<n> files "
            "are ignored) or a folder with images/ and masks/ (e.g. PraNet's TestDataset/CVC-ColonDB)"
        ),
        manual_instructions=(
            "request it from the CVC (http://mv.cvc.uab.es/projects/colon-qa/cvccolondb). The 380-image version used "
            "by polyp papers comes from the PraNet test set (TestDataset/CVC-ColonDB), which is not an official source."
        ),
        aliases=("colondb", "cvc_colondb"),
        notes=(
            "The original page describes 300 annotated frames; benchmark papers use a 380-image version. "
            "expected_pairs=380 refers to that version. No official split."
        ),
    ),
    DatasetSpec(
        name="cvc-300",
        title="CVC-300 (EndoScene-CVC300 test set)",
        modality="colonoscopy, polyp segmentation",
        homepage="http://www.cvc.uab.es/CVC-Colon/index.php/databases/cvc-endoscenestill/",
        licence="Available on request from the Computer Vision Center (UAB) for research; cite Vazquez et al. 2017.",
        citation=(
            "Vazquez D, Bernal J, Sanchez FJ, Fernandez-Esparrach G, Lopez AM, Romero A, Drozdzal M, Courville A. "
            "A Benchmark for Endoluminal Scene Segmentation of Colonoscopy Images. Journal of Healthcare Engineering "
            "2017:4037190."
        ),
        converter=convert.convert_paired_folders,
        download="manual",
        expected_pairs=60,
        layout="a folder with images/ and masks/ (as in PraNet's TestDataset/CVC-300), or Original/ + Ground Truth/",
        manual_instructions=(
            "EndoScene (CVC-EndoSceneStill) is distributed by the CVC on request; CVC-300 is its 60-image test part "
            "from CVC-ColonDB. Most papers use the copy in PraNet's TestDataset (not an official source)."
        ),
        aliases=("cvc300", "endoscene", "cvc_300"),
        notes="Homepage URL and the 60-image count are from the literature, not verified here. No official split.",
    ),
    DatasetSpec(
        name="etis-laribpolypdb",
        title="ETIS-LaribPolypDB",
        modality="colonoscopy, polyp segmentation",
        homepage="https://polyp.grand-challenge.org/EtisLarib/",
        licence="Research use as stated on the challenge page; cite Silva et al. 2014 (terms not re-checked here).",
        citation=(
            "Silva J, Histace A, Romain O, Dray X, Granado B. Toward embedded detection of polyps in WCE images for "
            "early diagnosis of colorectal cancer. Int J Computer Assisted Radiology and Surgery 9(2):283-293, 2014."
        ),
        converter=convert.convert_paired_folders,
        download="manual",
        expected_pairs=196,
        layout=(
            "images and masks in two sibling folders (e.g. ETIS-LaribPolypDB/ renamed images/ and 'Ground Truth'/ "
            "with p<n>.tif masks, or PraNet's TestDataset/ETIS-LaribPolypDB/{images,masks})"
        ),
        manual_instructions=(
            "the download on https://polyp.grand-challenge.org/EtisLarib/ (MICCAI 2015 polyp challenge test set). "
            "If the images folder is not called images/ or Original/, rename it to images/ before converting."
        ),
        aliases=("etis", "etis-larib", "etis_larib", "etislaribpolypdb"),
        notes="Archive name, format and inner folder names not verified. No official split.",
    ),
    DatasetSpec(
        name="polypgen",
        title="PolypGen2021 (EndoCV2021)",
        modality="colonoscopy, polyp segmentation, six centres",
        homepage="https://doi.org/10.7303/syn26376615",
        licence="Terms shown on the Synapse page after registration (not re-checked here); cite Ali et al. 2023.",
        citation=(
            "Ali S, Jha D, Ghatwary N, et al. A multi-centre polyp detection and segmentation dataset for "
            "generalisability assessment. Scientific Data 10:75, 2023."
        ),
        converter=convert.convert_polypgen,
        download="manual",
        layout="data_C<k>/images_C<k>/<stem>.jpg with data_C<k>/masks_C<k>/<stem>_mask.jpg, for k = 1..6",
        manual_instructions=(
            "Synapse (https://doi.org/10.7303/syn26376615, project syn26376615): needs a free Synapse account and "
            "accepting the data-use terms; download the PolypGen2021_MultiCenterData folder/zip."
        ),
        aliases=("polypgen2021", "endocv2021", "polyp-gen"),
        notes="Folder names from the data paper/challenge; not checked against the archive. Sequence data is skipped.",
    ),
    DatasetSpec(
        name="imageclefmed-polyp",
        title="ImageCLEFmed polyp segmentation",
        modality="colonoscopy, polyp segmentation",
        homepage="https://www.imageclef.org/",
        licence="ImageCLEF end-user agreement (signed at registration); research use.",
        citation=(
            "The ImageCLEF overview paper of the edition used, e.g. Hicks S et al., Overview of ImageCLEFmedical "
            "2023 - Medical Visual Question Answering for Gastrointestinal Tract, CLEF 2023 Working Notes."
        ),
        converter=convert.convert_paired_folders,
        download="manual",
        layout="a folder with images/ and masks/ (masks named like the images, or <stem>_mask)",
        manual_instructions=(
            "register for the ImageCLEFmed task on https://www.imageclef.org/ (data is released through the "
            "challenge platform after signing the end-user agreement), download the polyp images with their masks, "
            "and put them into images/ and masks/."
        ),
        aliases=("imageclef", "imageclefmed", "imageclef-polyp"),
        notes=(
            "MedDEL/OptiDEL do not say which ImageCLEFmed edition they used; the MEDVQA-GI tasks (2023, 2024) ship "
            "colonoscopy images with polyp masks. Nothing about this entry is verified."
        ),
    ),
    DatasetSpec(
        name="busi",
        title="BUSI (Breast Ultrasound Images)",
        modality="breast ultrasound, lesion segmentation",
        homepage="https://scholar.cu.edu.eg/?q=afahmy/pages/dataset",
        licence=(
            "Public for research; cite Al-Dhabyani et al. 2020. The Data in Brief article is open access; no separate "
            "licence file ships with the archive (not verified)."
        ),
        citation=(
            "Al-Dhabyani W, Gomaa M, Khaled H, Fahmy A. Dataset of breast ultrasound images. Data in Brief 28:104863, "
            "2020. doi:10.1016/j.dib.2019.104863"
        ),
        converter=convert.convert_busi,
        download="direct",
        urls=("https://scholar.cu.edu.eg/Dataset_BUSI.zip",),
        archive_format="zip",
        archive_name="Dataset_BUSI.zip",
        expected_pairs=647,
        layout=(
            "Dataset_BUSI_with_GT/{benign,malignant,normal}/'<class> (<n>).png' with '<class> (<n>)_mask.png' "
            "(and _mask_1.png, ... for extra lesions)"
        ),
        aliases=("dataset_busi", "breast-ultrasound"),
        notes=(
            "Direct URL as used by several public loaders (Cairo University scholars site); sha256 unknown. The "
            "'normal' class is left out, multi-lesion masks are merged. splits.csv: the split of the project's shared "
            "copy (129 test ids, shipped in optidel/data/splits/busi.csv); BUSI has no official split."
        ),
    ),
    DatasetSpec(
        name="drive",
        title="DRIVE (Digital Retinal Images for Vessel Extraction)",
        modality="retinal fundus, vessel segmentation",
        homepage="https://drive.grand-challenge.org/",
        licence="Research use after registration on the challenge site; cite Staal et al. 2004.",
        citation=(
            "Staal J, Abramoff MD, Niemeijer M, Viergever MA, van Ginneken B. Ridge-based vessel segmentation in color "
            "images of the retina. IEEE Transactions on Medical Imaging 23(4):501-509, 2004."
        ),
        converter=convert.convert_drive,
        download="manual",
        archive_format="zip",
        expected_pairs=40,
        layout=(
            "DRIVE/{training,test}/images/<n>_<split>.tif, 1st_manual/<n>_manual1.gif, mask/<n>_<split>_mask.gif"
        ),
        manual_instructions=(
            "register on https://drive.grand-challenge.org/ and download the data zip. The current release has no "
            "1st_manual masks for the test images; those images are skipped (the original 2004 release had them)."
        ),
        aliases=("drive-retina",),
        notes="Official 20/20 split from the folders; fov_masks/ from mask/. Registration-gated, so manual.",
    ),
)

REGISTRY: dict[str, DatasetSpec] = {s.name: s for s in _SPECS}

_ALIASES: dict[str, str] = {a: s.name for s in _SPECS for a in (s.name, *s.aliases)}


class UnknownDatasetError(OptidelError, KeyError):
    """A dataset name that is not in the registry (the message lists the known names)."""

    exit_code = 2

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


def _normalise(name: str) -> str:
    return name.strip().lower().replace(" ", "-")


def get_dataset(name: str) -> DatasetSpec:
    """The spec of a dataset, by name or alias (case-insensitive, ``_`` and ``-`` both accepted).

    Raises:
        UnknownDatasetError: (a ``KeyError``) the name is unknown; the message lists the known names.
    """
    key = _normalise(name)
    hit = _ALIASES.get(key) or _ALIASES.get(key.replace("_", "-"))
    if hit is None:
        raise UnknownDatasetError(f"unknown dataset {name!r}; known datasets: {', '.join(sorted(REGISTRY))}")
    return REGISTRY[hit]
