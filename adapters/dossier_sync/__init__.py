"""dossier_sync: administrative procedure dossiers to the national public service portal
(Cổng Dịch vụ công quốc gia), through the national data-sharing platform.

The province's one-stop-shop system (hệ thống một cửa) reports each dossier it receives
and every status change. It speaks the provincial canonical form (JSON, English field
names, schemas/dossiers/); the portal speaks its own (simulated in simulator/dossier.py):

    POST /ho-so/trang-thai       canonical status change (dossiers.status-change)
      -> POST {upstream_path}/ho-so/dong-bo
         {"maDonVi", "module": "TTHC", "maHoSo", "ngayTiepNhan": "yyyyMMddHHmmss",
          "data": "<HoSo><MaHoSo/><MaTTHC/><TenTTHC/><ChuHoSo>...</ChuHoSo>
                   <TrangThaiHoSo/><NgayCapNhat/><GhiChu/><NgayHenTra/></HoSo>"}
      <- 200 {"dossierId", "status", "synced": true}           (dossiers.sync-result)

    GET /ho-so/{dossierId}       what the portal holds, with its status history
      -> GET {upstream_path}/ho-so/{maHoSo}
      <- 200 {"dossierId", "status", "synced": true, "agencyCode", "procedure",
              "receivedAt", "updatedAt", "applicant", "dueDate"?, "history": [...]}

Field correspondences are the mapping files (mappings/status_change.yaml for the sync
message with maDonVi and module from the configuration, mappings/hoso.yaml for the HoSo
XML document in its `data`, mappings/portal_record.yaml) and the status code list
(codes/status.yaml: received 1, more_documents_needed 2, eligible 3, completed 4). Code
does only what a mapping cannot say: datetimes with any UTC offset are converted to
Vietnam time (UTC+7) before the mapping formats them as the portal's yyyyMMddHHmmss
(refusing, with a pointer, a datetime without an offset, which the engine's iso would
read in the zone), and the portal's answers, always HTTP 200 with an error_code, become
canonical answers:

    0   200 the canonical answer
    106 400 invalid-message naming /agencyCode (wrong, unregistered or not the first agency)
    201 404 no-such-record (the portal has no such dossier: send status received first)
    301 400 invalid-message naming the canonical field the portal refused, translated from
            the portal's field through the status-change mapping (a refused `module` is
            the service's configuration: 500 internal-error naming adapter_config.module)
    302 409 conflict naming the current and the requested status
    100 / HTTP 401  502 upstream-authentication-failed; anything else 502 upstream-bad-response

Configuration (`adapter_config`, checked when policies load):

    agency_code    maDonVi for a change without agencyCode (default: none, refused)
    module         the portal's module (default "TTHC")
    legacy_input   tcvn3 | vni: the caller's text (applicant name, note, procedure name)
                   is converted to Unicode NFC before the portal sees it; without it,
                   text is still normalised to NFC
    legacy_output  tcvn3 | vni: the answer's text is converted back for the caller
"""

from .adapter import ADAPTER, DossierSyncAdapter, DossierSyncConfig

__all__ = ["ADAPTER", "DossierSyncAdapter", "DossierSyncConfig"]
