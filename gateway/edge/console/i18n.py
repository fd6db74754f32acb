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

from gateway.edge.console.audit_messages import MESSAGES as AUDIT_MESSAGES

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
    "nav.password": ("Đổi mật khẩu", "Change password"),
    "password.title": ("Đổi mật khẩu", "Change your password"),
    "password.forced": (
        "Mật khẩu bạn vừa dùng chỉ dùng được một lần. Hãy chọn mật khẩu của riêng bạn.",
        "The password you signed in with was for one use. Choose your own now.",
    ),
    "password.current": ("Mật khẩu hiện tại", "Current password"),
    "password.new": ("Mật khẩu mới", "New password"),
    "password.again": ("Nhập lại mật khẩu mới", "New password again"),
    "password.rules": (
        "Từ {min_length} đến {max_length} ký tự; được dùng dấu cách và chữ có dấu. "
        "Một cụm từ dễ nhớ là lựa chọn tốt. Mật khẩu đã bị lộ hoặc chứa tên tài khoản "
        "sẽ bị từ chối.",
        "{min_length} to {max_length} characters; spaces and accented letters are fine. "
        "A phrase you remember is a good choice. Passwords known from breaches, or "
        "containing your account name, are refused.",
    ),
    "password.save": ("Lưu mật khẩu", "Save the password"),
    "password.saved": ("Đã đổi mật khẩu.", "Your password is changed."),
    "password.mismatch": ("Hai lần nhập không giống nhau.", "The two entries differ."),
    "password.current_wrong": ("Mật khẩu hiện tại không đúng.", "The current password is wrong."),
    "password.too_short": (
        "Quá ngắn: cần ít nhất {min_length} ký tự.",
        "Too short: at least {min_length} characters.",
    ),
    "password.too_long": (
        "Quá dài: nhiều nhất {max_length} ký tự.",
        "Too long: at most {max_length} characters.",
    ),
    "password.breached": (
        "Mật khẩu này có trong danh sách mật khẩu đã bị lộ; hãy chọn mật khẩu khác.",
        "This password is on the list of breached passwords; choose another.",
    ),
    "password.contains_name": (
        "Mật khẩu không được chứa tên tài khoản.",
        "The password may not contain your account name.",
    ),
    "password.repetitive": (
        "Mật khẩu chỉ lặp lại một ký tự.",
        "The password repeats a single character.",
    ),
    "password.unchanged": (
        "Mật khẩu mới phải khác mật khẩu hiện tại.",
        "The new password must differ from the current one.",
    ),
    "nav.people": ("Tài khoản", "Accounts"),
    "people.title": ("Tài khoản người dùng", "People's accounts"),
    "people.display_name": ("Họ và tên", "Full name"),
    "people.state": ("Trạng thái", "State"),
    "people.actions": ("Thao tác", "Actions"),
    "people.active": ("Đang hoạt động", "Active"),
    "people.locked": ("Tạm khoá", "Locked"),
    "people.disabled": ("Đã vô hiệu hoá", "Disabled"),
    "people.change": ("Thay đổi", "Change"),
    "people.save_roles": ("Lưu vai trò", "Save the roles"),
    "people.reset": ("Đặt lại mật khẩu và mã", "Reset password and code"),
    "people.disable": ("Vô hiệu hoá", "Disable"),
    "people.create": ("Tạo tài khoản", "Create an account"),
    "people.name_help": (
        "2–64 ký tự: chữ thường không dấu, số, '.', '_', '-'.",
        "2-64 characters: a-z, 0-9, '.', '_', '-'.",
    ),
    "people.issued": ("Thông tin đăng nhập của {name}", "Sign-in details of {name}"),
    "people.issued_help": (
        "Chỉ hiển thị một lần. Hãy trao trực tiếp cho người dùng; mật khẩu chỉ dùng được "
        "cho lần đăng nhập đầu, mã bí mật TOTP được thêm vào ứng dụng xác thực.",
        "Shown once. Hand them to the person directly; the password is for the first "
        "sign-in only, the TOTP secret goes into their authenticator app.",
    ),
    "people.totp_secret": ("Mã bí mật TOTP", "TOTP secret"),
    "people.done": ("Đã lưu thay đổi.", "The change is saved."),
    "people.not_yourself": (
        "Bạn không thể tự vô hiệu hoá hay bỏ vai trò quản trị của chính mình; hãy nhờ một "
        "quản trị viên khác.",
        "You cannot disable yourself or drop your own administrator role; ask another "
        "administrator.",
    ),
    "nav.services": ("Dịch vụ", "Services"),
    "services.title": ("Dịch vụ", "Services"),
    "services.service": ("Dịch vụ", "Service"),
    "services.upstream": ("Hệ thống cung cấp", "Upstream"),
    "services.state": ("Trạng thái", "State"),
    "services.on": ("Đang bật", "On"),
    "services.off": ("Đang tắt", "Off"),
    "services.name": ("Tên dịch vụ", "Name"),
    "services.enabled": ("Bật dịch vụ", "Service enabled"),
    "services.connect_ms": ("Thời gian chờ kết nối (ms)", "Connect timeout (ms)"),
    "services.total_ms": ("Thời gian chờ toàn bộ (ms)", "Total timeout (ms)"),
    "services.attempts": ("Số lần thử (1: không thử lại)", "Attempts (1: no retry)"),
    "services.request_schema": (
        "Lược đồ yêu cầu (tên trong kho lược đồ)",
        "Request schema (subject in the registry)",
    ),
    "services.response_schema": (
        "Lược đồ trả lời (tên trong kho lược đồ)",
        "Response schema (subject in the registry)",
    ),
    "services.require": (
        "Trường trách nhiệm bắt buộc (officer, procedure, case)",
        "Required accountability fields (officer, procedure, case)",
    ),
    "services.audit": ("Khi không ghi được nhật ký", "When the audit cannot be written"),
    "services.access": ("Quyền truy cập", "Access rights"),
    "services.access_help": (
        "Quyền truy cập do quản trị viên thay đổi.",
        "Access rights are the administrator's to change.",
    ),
    "services.no_access": ("Chưa cấp quyền cho hệ thống nào.", "No system has a right yet."),
    "services.preview": ("Xem trước thay đổi", "Preview the change"),
    "services.nothing": ("Không có gì thay đổi.", "Nothing would change."),
    "services.confirm": ("Xác nhận và áp dụng", "Confirm and apply"),
    "services.back": ("Quay lại biểu mẫu", "Back to the form"),
    "services.whole_number": ("Cần một số nguyên.", "A whole number is needed."),
    # Creating, changing and deleting entities (editing.py, kinds.py).
    "services.provider": ("Cơ quan cung cấp (mã)", "Providing agency (code)"),
    "services.code": ("Mã dịch vụ", "Service code"),
    "services.version": ("Phiên bản", "Version"),
    "services.upstream_path": ("Đường dẫn ở hệ thống cung cấp", "Path at the upstream"),
    "services.adapter": ("Bộ chuyển đổi", "Adapter"),
    "upstreams.title": ("Hệ thống cung cấp", "Upstreams"),
    "upstreams.name": ("Tên (mã)", "Name (code)"),
    "upstreams.base_url": ("Địa chỉ gốc", "Base URL"),
    "upstreams.max_concurrency": ("Số lời gọi đồng thời tối đa", "Calls in flight at most"),
    "upstreams.queue_timeout_ms": ("Thời gian chờ hàng đợi (ms)", "Queue timeout (ms)"),
    "upstreams.failure_threshold": (
        "Số lỗi liên tiếp thì ngắt mạch (0: không ngắt)",
        "Failures in a row that open the breaker (0: no breaker)",
    ),
    "upstreams.auth_type": ("Xác thực với hệ thống cung cấp", "Authentication to the upstream"),
    "upstreams.token_url": ("Địa chỉ lấy token", "Token URL"),
    "upstreams.client_id": ("Mã client", "Client ID"),
    "upstreams.client_secret_env": (
        "Biến môi trường chứa bí mật",
        "Environment variable holding the secret",
    ),
    "clients.groups": ("Nhóm", "Groups"),
    "groups.title": ("Nhóm hệ thống", "Groups"),
    "groups.code": ("Mã nhóm", "Group code"),
    "groups.name": ("Tên nhóm", "Name"),
    "limits.title": ("Giới hạn tần suất", "Rate limits"),
    "limits.client": ("Hệ thống gọi (trống: mọi hệ thống)", "Calling system (empty: every one)"),
    "limits.service": (
        "Dịch vụ, dạng cơ quan/mã/phiên bản (trống: mọi dịch vụ)",
        "Service, as agency/code/version (empty: every one)",
    ),
    "limits.requests": ("Số yêu cầu", "Requests"),
    "limits.per": ("Trong mỗi", "Per"),
    "limits.burst": ("Dồn tối đa", "Burst"),
    "limits.quota_per_day": ("Hạn mức mỗi ngày", "Quota a day"),
    "agencies.systems": ("Hệ thống của cơ quan", "The agency's systems"),
    "agencies.no_systems": ("Cơ quan chưa có hệ thống nào.", "The agency has no system yet."),
    "nav.upstreams": ("Hệ thống cung cấp", "Upstreams"),
    "nav.rate_limits": ("Giới hạn", "Rate limits"),
    "nav.groups": ("Nhóm", "Groups"),
    "edit.new": ("Thêm {what}", "New {what}"),
    "edit.title_new": ("Thêm {what}", "New {what}"),
    "edit.title_edit": ("Chi tiết {what} {key}", "The {what} {key}"),
    "edit.preview_create": ("Xác nhận thêm {what}", "Confirm the new {what}"),
    "edit.preview_update": ("Xác nhận thay đổi {what} {key}", "Confirm the change to {what} {key}"),
    "edit.preview_delete": ("Xác nhận xoá {what} {key}", "Confirm deleting {what} {key}"),
    "edit.delete": ("Xoá…", "Delete…"),
    "edit.delete_help": (
        "Xem trước việc xoá; chưa có gì bị xoá cho tới khi bạn xác nhận.",
        "Preview the deletion; nothing is deleted until you confirm.",
    ),
    "edit.exists": ("Đã có một mục như vậy.", "There is one already."),
    "edit.default": ("(mặc định)", "(the default)"),
    "edit.every": ("(mọi)", "(every)"),
    "edit.list_help": ("cách nhau bởi dấu phẩy", "separated by commas"),
    "edit.back_to_list": ("Quay lại danh sách: {what}", "Back to the list: {what}"),
    # A change's summary in a preview or a comparison (gateway.config.diff.Change).
    "change.create": ("Thêm {what} {key}", "created {what} {key}"),
    "change.update": ("Sửa {what} {key}", "updated {what} {key}"),
    "change.delete": ("Xoá {what} {key}", "deleted {what} {key}"),
    "change.access_create": ("Cấp quyền truy cập {key}", "granted access rights of {key}"),
    "change.access_update": ("Thay quyền truy cập {key}", "replaced access rights of {key}"),
    "change.access_delete": ("Gỡ quyền truy cập {key}", "removed access rights of {key}"),
    "kind.agency": ("cơ quan", "agency"),
    "kind.group": ("nhóm", "group"),
    "kind.client": ("hệ thống", "system"),
    "kind.upstream": ("hệ thống cung cấp", "upstream"),
    "kind.service": ("dịch vụ", "service"),
    "kind.rate_limit": ("giới hạn tần suất", "rate limit"),
    "kind.issuer": ("bên phát hành tin cậy", "trusted issuer"),
    "kind.topic": ("chủ đề", "topic"),
    "kind.job": ("lịch đồng bộ", "scheduled pull"),
    # Signing in through the province's OpenID provider (oidc.py).
    "oidc.sign_in": (
        "Đăng nhập bằng tài khoản của tỉnh (SSO)",
        "Sign in with the province's account (SSO)",
    ),
    "oidc.refused_title": ("Không đăng nhập được", "Not signed in"),
    "oidc.try_again": ("Quay lại trang đăng nhập", "Back to signing in"),
    "oidc.done_title": ("Đã đăng nhập", "Signed in"),
    "oidc.continue": ("Tiếp tục vào bảng điều khiển", "Continue to the console"),
    "oidc.refused_state": (
        "Phiên đăng nhập này không do trình duyệt của bạn bắt đầu, hoặc đã quá hạn. "
        "Hãy đăng nhập lại từ đầu.",
        "This sign-in was not started by your browser, or it has expired. Start again.",
    ),
    "oidc.refused_provider_said": (
        "Hệ thống đăng nhập của tỉnh đã không cho phép đăng nhập.",
        "The province's sign-in service did not let you sign in.",
    ),
    "oidc.refused_provider": (
        "Không liên lạc được với hệ thống đăng nhập của tỉnh. Hãy thử lại sau.",
        "The province's sign-in service cannot be reached. Try again later.",
    ),
    "oidc.refused_token": (
        "Kết quả đăng nhập không hợp lệ và đã bị từ chối.",
        "The sign-in's result is not valid and was refused.",
    ),
    "oidc.refused_mfa": (
        "Hệ thống đăng nhập của tỉnh không xác nhận bạn đã dùng xác thực hai lớp; "
        "bảng điều khiển đòi hỏi điều đó.",
        "The province's sign-in service does not say you gave a second factor; "
        "the console requires one.",
    ),
    "oidc.refused_roles": (
        "Tài khoản của bạn không thuộc nhóm nào được giao vai trò trong bảng điều khiển. "
        "Hãy đề nghị quản trị viên cấp quyền.",
        "Your account is in no group that has a role in the console. Ask an administrator for one.",
    ),
    "oidc.refused_name": (
        "Tên tài khoản từ hệ thống đăng nhập không dùng được ở đây.",
        "The account name the sign-in service gives cannot be used here.",
    ),
    "oidc.refused_taken": (
        "Đã có một tài khoản nội bộ cùng tên; quản trị viên cần xử lý trước.",
        "A local account has that name; an administrator must resolve it first.",
    ),
    "oidc.refused_disabled": ("Tài khoản đã bị khoá.", "The account is disabled."),
    # Passkeys (passkeys.py, the second factor's page).
    "nav.passkeys": ("Khoá truy cập", "Passkeys"),
    "passkeys.title": ("Khoá truy cập (passkey)", "Passkeys"),
    "passkeys.help": (
        "Một khoá truy cập (khoá bảo mật, điện thoại hoặc máy tính của bạn) thay được mã "
        "xác thực khi đăng nhập, sau mật khẩu.",
        "A passkey (a security key, your phone or computer) can stand in for the "
        "authentication code when you sign in, after the password.",
    ),
    "passkeys.name": ("Tên gợi nhớ", "Name"),
    "passkeys.unnamed": ("Khoá truy cập", "Passkey"),
    "passkeys.created": ("Thêm lúc", "Added"),
    "passkeys.last_used": ("Dùng lần cuối", "Last used"),
    "passkeys.remove": ("Gỡ", "Remove"),
    "passkeys.add": ("Thêm khoá truy cập", "Add a passkey"),
    "passkeys.added": ("Đã thêm khoá truy cập.", "The passkey is added."),
    "passkeys.none": ("Bạn chưa có khoá truy cập nào.", "You have no passkey yet."),
    "passkeys.refused": (
        "Khoá truy cập không được chấp nhận. Hãy thử lại.",
        "The passkey was not accepted. Try again.",
    ),
    "passkeys.failed": (
        "Trình duyệt không tạo hoặc dùng được khoá truy cập",
        "The browser could not make or use a passkey",
    ),
    "signin.use_passkey": ("Dùng khoá truy cập", "Use a passkey"),
    "signin.passkey_help": (
        "Hoặc dùng một khoá truy cập đã thêm vào tài khoản.",
        "Or use a passkey added to your account.",
    ),
    "signin.passkey_failed": (
        "Khoá truy cập không được chấp nhận.",
        "The passkey was not accepted.",
    ),
    "error.stale": (
        "Biểu mẫu không đầy đủ; hãy mở lại trang dịch vụ.",
        "The form is incomplete; open the service's page again.",
    ),
    "nav.versions": ("Phiên bản", "Versions"),
    "versions.title": ("Các phiên bản cấu hình", "Policy versions"),
    "versions.version": ("Phiên bản", "Version"),
    "versions.source": ("Nguồn", "From"),
    "versions.restore": ("Khôi phục", "Restore"),
    "versions.compare": ("So sánh", "Compare"),
    "versions.compare_help": (
        "Xem những gì đã thay đổi giữa hai phiên bản bất kỳ.",
        "See what changed between any two versions.",
    ),
    "versions.from": ("Từ phiên bản", "From version"),
    "versions.to": ("Đến phiên bản", "To version"),
    "versions.compare_title": (
        "Thay đổi từ phiên bản {a} đến {b}",
        "Changes from version {a} to {b}",
    ),
    "versions.pick_two": ("Hãy chọn hai số phiên bản.", "Pick two version numbers."),
    "versions.rollback_title": ("Khôi phục phiên bản {n}", "Restore version {n}"),
    "versions.rollback_help": (
        "Cấu hình đang ở phiên bản {current}. Khôi phục phiên bản {n} sẽ tạo một phiên bản "
        "mới với những thay đổi sau:",
        "The policy is at version {current}. Restoring version {n} makes a new version "
        "with these changes:",
    ),
    "versions.confirm": ("Xác nhận khôi phục", "Confirm the restore"),
    "versions.restored": (
        "Đã khôi phục: phiên bản cấu hình {version}.",
        "Restored: policy version {version}.",
    ),
    "nav.access": ("Quyền truy cập", "Access rights"),
    "access.title": ("Quyền truy cập: hệ thống × dịch vụ", "Access rights: systems × services"),
    "access.help": (
        "Ô được đánh dấu: hệ thống được gọi toàn bộ dịch vụ. Quyền hẹp hơn (một phương thức, "
        "một đường dẫn, hoặc qua nhóm) được ghi trong ô.",
        "A ticked cell: the system may call the whole service. Narrower rights (a method, "
        "a path, or through a group) are written in the cell.",
    ),
    "access.system": ("Hệ thống", "System"),
    "access.whole": (
        "{client} được gọi toàn bộ {service}",
        "{client} may call the whole of {service}",
    ),
    "access.read_only": (
        "Bạn chỉ được xem; thay đổi quyền truy cập cần vai trò quản trị viên.",
        "You may read only; changing access rights needs the administrator role.",
    ),
    "access.preview_title": ("Xác nhận thay đổi quyền truy cập", "Confirm the access rights"),
    "access.back": ("Quay lại ma trận", "Back to the matrix"),
    "access.by_endpoint": (
        "Quyền theo từng điểm cuối của {service}",
        "Rights by endpoint of {service}",
    ),
    "access.service_title": (
        "Quyền truy cập: hệ thống × điểm cuối của {service}",
        "Access rights: systems × endpoints of {service}",
    ),
    "access.service_help": (
        "Ô được đánh dấu: hệ thống chỉ được gọi điểm cuối đó (phương thức và mẫu đường dẫn). "
        "Quyền toàn bộ dịch vụ và quyền qua nhóm được ghi ở cột cuối, sửa ở ma trận chung "
        "hoặc ở nhóm.",
        "A ticked cell: the system may call that endpoint only (a method and a path "
        "pattern). Rights to the whole service and through a group are written in the last "
        "column, and changed in the full matrix or the group.",
    ),
    "access.method": ("Phương thức", "Method"),
    "access.path": ("Mẫu đường dẫn", "Path pattern"),
    "access.add_endpoint": ("Thêm cột điểm cuối", "Add an endpoint column"),
    "access.elsewhere": ("Quyền khác", "Other rights"),
    "access.whole_held": ("toàn bộ dịch vụ", "the whole service"),
    "access.endpoint": (
        "{client} được gọi {method} {path}",
        "{client} may call {method} {path}",
    ),
    "access.no_endpoints": (
        "Chưa có quyền theo điểm cuối nào; thêm một cột để cấp.",
        "No rights by endpoint yet; add a column to grant one.",
    ),
    "access.no_service": ("Không có dịch vụ này.", "No such service."),
    "nav.clients": ("Hệ thống & khoá", "Systems & keys"),
    "clients.title": ("Hệ thống kết nối", "Client systems"),
    "clients.code": ("Mã hệ thống", "Client id"),
    "clients.name": ("Tên", "Name"),
    "clients.agency": ("Cơ quan", "Agency"),
    "clients.credentials_title": ("Thông tin xác thực của {code}", "Credentials of {code}"),
    "clients.kind": ("Loại", "Kind"),
    "clients.kind_secret": ("Client secret (OAuth2)", "Client secret (OAuth2)"),
    "clients.kind_api_key": ("API key", "API key"),
    # A pinned TLS client certificate (listed; pinned through the admin API).
    "clients.kind_certificate": ("Chứng thư số (TLS)", "Client certificate (TLS)"),
    "clients.hint": ("Ký tự đầu", "Begins with"),
    "clients.created": ("Cấp lúc (UTC)", "Issued (UTC)"),
    "clients.expires": ("Hết hạn (UTC)", "Expires (UTC)"),
    "clients.active": ("Còn hiệu lực", "Active"),
    "clients.inactive": ("Hết hiệu lực", "Inactive"),
    "clients.revoke": ("Thu hồi", "Revoke"),
    "clients.issue": ("Cấp thêm", "Issue another"),
    "clients.rotate": ("Thay khoá", "Rotate"),
    "clients.grace": ("Khoá cũ còn dùng được trong", "The old ones keep working for"),
    "clients.grace_0": ("0 (thu hồi ngay)", "0 (revoked now)"),
    "clients.grace_300": ("5 phút", "5 minutes"),
    "clients.grace_3600": ("1 giờ", "1 hour"),
    "clients.grace_86400": ("1 ngày", "1 day"),
    "clients.issued": ("Giá trị mới (#{id})", "The new value (#{id})"),
    "clients.issued_help": (
        "Chỉ hiển thị một lần: cổng chỉ lưu bản băm. Hãy chuyển ngay cho đơn vị vận hành "
        "hệ thống qua kênh an toàn.",
        "Shown once: the gateway keeps only its digest. Hand it now to the system's "
        "operators over a safe channel.",
    ),
    "dash.auto_on": ("Tự làm mới mỗi {seconds} giây", "Refresh every {seconds} seconds"),
    "dash.auto_off": (
        "Đang tự làm mới mỗi {seconds} giây — dừng",
        "Refreshing every {seconds} seconds — stop",
    ),
    "dash.hour": ("60 phút qua", "The last 60 minutes"),
    "dash.per_minute": ("Giao dịch/phút", "Exchanges a minute"),
    "dash.total_hour": ("Giao dịch trong giờ", "Exchanges this hour"),
    "dash.error_rate": ("Tỷ lệ lỗi", "Error rate"),
    "dash.p95": ("Độ trễ p95", "p95 latency"),
    "dash.total_day": ("Giao dịch 24 giờ qua", "Exchanges, last 24 h"),
    "dash.chart": (
        "Số giao dịch mỗi phút trong 60 phút qua, theo kết quả (cao nhất {top}/phút)",
        "Exchanges per minute over the last 60 minutes, by outcome (at most {top} a minute)",
    ),
    "dash.now": ("bây giờ", "now"),
    "dash.success": ("Thành công", "Succeeded"),
    "dash.refused": ("Bị từ chối (4xx)", "Refused (4xx)"),
    "dash.failed": ("Lỗi (5xx)", "Failed (5xx)"),
    "dash.count": ("Số giao dịch", "Exchanges"),
    "dash.by_service": ("Theo dịch vụ", "By service"),
    "dash.by_agency": ("Theo cơ quan gọi", "By calling agency"),
    "dash.none": ("Chưa có giao dịch.", "No exchange yet."),
    "dash.capped": (
        "Chỉ tính 100.000 giao dịch gần nhất của giờ qua.",
        "Only the newest 100,000 exchanges of the hour are counted.",
    ),
    "dash.upstreams": ("Hệ thống cung cấp", "Upstreams"),
    "dash.breaker": ("Cầu dao", "Circuit breaker"),
    "dash.breaker_closed": ("Bình thường", "Closed (normal)"),
    "dash.breaker_open": ("Ngắt", "Open"),
    "dash.breaker_half_open": ("Đang thử lại", "Half open"),
    "dash.in_flight": ("Đang xử lý", "In flight"),
    "dash.no_upstream_calls": (
        "Chưa gọi hệ thống nào kể từ khi khởi động.",
        "No upstream called since start.",
    ),
    "dash.pipeline": ("Nhật ký kiểm toán", "Audit pipeline"),
    "dash.you": ("Phiên của bạn", "Your session"),
    "form.required": ("Trường này là bắt buộc.", "This field is required."),
    # The policy's refusals of a field, by pydantic's error code (editing.worded).
    "invalid.missing": ("Trường này là bắt buộc.", "This field is required."),
    "invalid.string_pattern_mismatch": (
        "Không đúng định dạng (mẫu {pattern}).",
        "Not in the expected form (pattern {pattern}).",
    ),
    "invalid.string_too_short": (
        "Cần ít nhất {min_length} ký tự.",
        "At least {min_length} characters.",
    ),
    "invalid.string_too_long": (
        "Không được quá {max_length} ký tự.",
        "At most {max_length} characters.",
    ),
    "invalid.greater_than_equal": ("Phải lớn hơn hoặc bằng {ge}.", "Must be at least {ge}."),
    "invalid.greater_than": ("Phải lớn hơn {gt}.", "Must be more than {gt}."),
    "invalid.less_than_equal": ("Phải nhỏ hơn hoặc bằng {le}.", "Must be at most {le}."),
    "invalid.less_than": ("Phải nhỏ hơn {lt}.", "Must be less than {lt}."),
    "invalid.int_type": ("Cần một số nguyên.", "A whole number is needed."),
    "invalid.int_parsing": ("Cần một số nguyên.", "A whole number is needed."),
    "invalid.int_from_float": ("Cần một số nguyên.", "A whole number is needed."),
    "invalid.bool_type": ("Cần giá trị có/không.", "Yes or no is needed."),
    "invalid.literal_error": ("Phải là một trong: {expected}.", "Must be one of: {expected}."),
    "invalid.extra_forbidden": ("Chính sách không có trường này.", "The policy has no such field."),
    "invalid.string_type": ("Cần một chuỗi ký tự.", "Text is needed."),
    "invalid.list_type": ("Cần một danh sách.", "A list is needed."),
    "invalid.too_short": ("Cần ít nhất {min_length} mục.", "At least {min_length} items."),
    "invalid.too_long": ("Không được quá {max_length} mục.", "At most {max_length} items."),
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
    **AUDIT_MESSAGES,  # the auditors' pages (audit_messages.py)
}


def translate(lang: str, key: str, /, **values: object) -> str:
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
