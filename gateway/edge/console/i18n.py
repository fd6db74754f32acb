"""The console's words, Vietnamese first and English beside them: one catalogue, one
entry a message holding both languages, so that no message lacks one.

A small dictionary rather than gettext: a few dozen messages, two languages, and no
build step to compile catalogues.

Example:
    >>> translate("vi", "signin.title")
    'Đăng nhập'
    >>> translate("en", "signin.title")
    'Sign in'
"""

from __future__ import annotations

__all__ = ["CATALOGUE", "DEFAULT", "LANGUAGES", "translate"]

LANGUAGES = ("vi", "en")
DEFAULT = "vi"

CATALOGUE: dict[str, tuple[str, str]] = {
    "app.title": ("Cổng LGSP — Bảng điều khiển", "LGSP gateway — Console"),
    "app.skip": ("Bỏ qua, tới nội dung", "Skip to content"),
    "lang.switch": ("English", "Tiếng Việt"),
    "nav.home": ("Trang chủ", "Home"),
    "nav.agencies": ("Cơ quan", "Agencies"),
    "nav.events": ("Nhật ký thay đổi", "Change log"),
    "nav.signout": ("Đăng xuất", "Sign out"),
    "nav.signout_all": ("Đăng xuất mọi nơi", "Sign out everywhere"),
    "signin.title": ("Đăng nhập", "Sign in"),
    "signin.name": ("Tên tài khoản", "Account name"),
    "signin.password": ("Mật khẩu", "Password"),
    "signin.submit": ("Tiếp tục", "Continue"),
    "signin.totp_title": ("Mã xác thực hai lớp", "Second factor"),
    "signin.totp_help": (
        "Nhập mã 6 chữ số trong ứng dụng xác thực của bạn.",
        "Enter the 6-digit code your authenticator app shows.",
    ),
    "signin.totp": ("Mã xác thực", "Authentication code"),
    "signin.verify": ("Xác nhận", "Verify"),
    "signin.failed": (
        "Tên tài khoản hoặc mật khẩu không đúng.",
        "The account name or the password is wrong.",
    ),
    "signin.totp_failed": (
        "Mã xác thực không đúng hoặc đã được dùng. Hãy nhập mã hiện tại.",
        "The code is wrong or was already used. Enter the current code.",
    ),
    "signin.locked": (
        "Tài khoản tạm khoá do nhập sai nhiều lần. Thử lại sau {minutes} phút "
        "hoặc nhờ quản trị viên đặt lại.",
        "The account is locked after repeated failures. Try again in {minutes} minutes "
        "or ask an administrator to reset it.",
    ),
    "signin.throttled": (
        "Quá nhiều lần đăng nhập sai từ địa chỉ này. Thử lại sau {seconds} giây.",
        "Too many failed sign-ins from this address. Try again in {seconds} seconds.",
    ),
    "signin.expired": (
        "Phiên đăng nhập đã hết hạn. Hãy đăng nhập lại.",
        "Your session has ended. Sign in again.",
    ),
    "signin.signed_out": ("Bạn đã đăng xuất.", "You are signed out."),
    "home.title": ("Trang chủ", "Home"),
    "home.welcome": ("Xin chào, {name}.", "Welcome, {name}."),
    "home.roles": ("Vai trò", "Roles"),
    "home.version": ("Phiên bản cấu hình", "Configuration version"),
    "home.session_ends": ("Phiên kết thúc lúc", "Session ends at"),
    "agencies.title": ("Cơ quan", "Agencies"),
    "agencies.code": ("Mã cơ quan", "Agency code"),
    "agencies.name": ("Tên cơ quan", "Name"),
    "agencies.doc_code": ("Mã văn thư (QCVN 102:2016)", "Document-exchange code (QCVN 102:2016)"),
    "agencies.edit": ("Sửa", "Edit"),
    "agencies.edit_title": ("Sửa cơ quan {code}", "Edit agency {code}"),
    "agencies.comment": ("Lý do thay đổi", "Reason for the change"),
    "agencies.comment_help": (
        "Bắt buộc; được ghi vào nhật ký cùng tên bạn.",
        "Required; recorded in the change log with your name.",
    ),
    "agencies.save": ("Lưu thay đổi", "Save the change"),
    "agencies.saved": (
        "Đã lưu: phiên bản cấu hình {version}.",
        "Saved: configuration version {version}.",
    ),
    "agencies.unchanged": ("Không có gì thay đổi.", "Nothing changed."),
    "agencies.read_only": (
        "Bạn chỉ được xem; sửa cơ quan cần vai trò quản trị viên.",
        "You may read only; editing agencies needs the administrator role.",
    ),
    "form.required": ("Trường này là bắt buộc.", "This field is required."),
    "form.errors": ("Thay đổi chưa được lưu:", "The change was not saved:"),
    "events.title": ("Nhật ký thay đổi", "Change log"),
    "events.at": ("Thời điểm", "When"),
    "events.actor": ("Người thực hiện", "Who"),
    "events.action": ("Thao tác", "What"),
    "events.target": ("Đối tượng", "Target"),
    "events.comment": ("Lý do", "Why"),
    "error.title": ("Không thực hiện được", "Not possible"),
    "error.forbidden": (
        "Vai trò của bạn không cho phép việc này.",
        "Your roles do not allow this.",
    ),
    "error.csrf": (
        "Biểu mẫu đã cũ hoặc không đến từ bảng điều khiển. Hãy tải lại trang và thử lại.",
        "The form is stale or did not come from the console. Reload the page and try again.",
    ),
    "error.not_found": ("Không tìm thấy trang này.", "There is no such page."),
    "error.back": ("Về trang chủ", "Back to the home page"),
}


def translate(lang: str, key: str, **values: object) -> str:
    """The message `key` in `lang` (Vietnamese for an unknown language), with `values`
    put in; the key itself if the catalogue lacks it.

    Example:
        >>> translate("en", "home.welcome", name="Nguyễn Văn A")
        'Welcome, Nguyễn Văn A.'
    """
    entry = CATALOGUE.get(key)
    if entry is None:
        return key
    text = entry[1] if lang == "en" else entry[0]
    return text.format(**values) if values else text
