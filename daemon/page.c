/*
 * page.c - the status page at / (HTML, no JavaScript) and its one form
 * that changes state, POST /mark (an admin records a report).  The model
 * comes from status.c, who may see and do what from auth.c.
 */
#include "cutoffd.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#define DAY 86400
#define PAGE_COMPACT 40             /* above: on-time rows fold away */
#define PAGE_ROWS_MAX 300           /* unit rows of one kind per section */

static const char page_css[] =
	"body{font-family:system-ui,sans-serif;margin:1em auto;max-width:70em;"
	"padding:0 1em;color:#222;background:#fff}"
	"h1{font-size:1.5em;margin:.2em 0}h2{font-size:1.15em;margin:0;"
	"display:inline}"
	"table{border-collapse:collapse;margin:.5em 0;width:100%}"
	"th,td{border:1px solid #ccc;padding:.25em .5em;text-align:left;"
	"vertical-align:top}th{background:#f3f3f3}"
	"td.n{text-align:right}"
	".ok{background:#dff3df;color:#134d13}"
	".late{background:#fff0cc;color:#6b4800}"
	".miss{background:#fbdcdc;color:#7a1010;font-weight:bold}"
	".nd{background:#f1f1f1;color:#555}"
	".st{white-space:nowrap}"
	"section{border:1px solid #ddd;border-radius:4px;margin:1em 0;"
	"padding:.5em 1em}"
	"summary{cursor:pointer}"
	"form.i{display:inline;margin:0}"
	".bar{display:flex;flex-wrap:wrap;gap:1em;align-items:center;"
	"justify-content:space-between}"
	".muted{color:#666;font-size:.9em}"
	".err{color:#7a1010}body>form{margin:.6em 0}";

struct page {
	struct app *a;
	const struct status *s;
	const struct status_filter *f;
	bool logged;
	char csrf[65];
	const char *who;         /* the admin logged in (its id) */
	struct buf *b;
};

static void
put_opt(struct buf *b, const char *value, const char *label, bool sel)
{
	buf_puts(b, "<option value=\"");
	html_esc(b, value);
	buf_puts(b, sel ? "\" selected>" : "\">");
	html_esc(b, label);
	buf_puts(b, "</option>");
}

static void
put_anchor(struct buf *b, const char *occ_id)
{
	buf_puts(b, "o-");
	for (const char *p = occ_id; *p != '\0'; p++)
		buf_putc(b, *p == '/' ? '-' : *p);
}

static void
put_hidden(struct buf *b, const char *name, const char *value)
{
	if (value == NULL)
		return;
	buf_printf(b, "<input type=\"hidden\" name=\"%s\" value=\"", name);
	html_esc(b, value);
	buf_puts(b, "\">");
}

static void
page_unit_row(struct page *pg, const struct st_occ *so,
	      const struct st_unit *su)
{
	struct buf *b = pg->b;
	const struct conf *c = pg->a->conf;
	char t[20];

	buf_puts(b, "<tr><td>");
	html_esc(b, su->u->name ? su->u->name : su->u->id);
	buf_puts(b, " <span class=\"muted\">");
	html_esc(b, su->u->id);
	if (su->own_due) {
		ymd_format_vn(su->due, t);
		buf_printf(b, " · gia hạn đến %s", t);
	}
	buf_puts(b, "</span></td>");
	switch (su->state) {
	case US_SUBMITTED:
	case US_NIL:
		tz_format_vn(c->tz, su->at, t);
		buf_printf(b, "<td class=\"st %s\">%s%s</td><td>%s",
			   su->late ? "late" : "ok",
			   su->state == US_NIL ? "&#8709; Không phát sinh" :
			   su->late ? "&#9888; Nộp muộn" : "&#10003; Đúng hạn",
			   su->state == US_NIL && su->late ? " (muộn)" : "", t);
		/* the secretariat's own words about the record */
		if (su->note != NULL) {
			buf_puts(b, "<div class=\"muted note\">");
			html_esc(b, su->note);
			buf_puts(b, "</div>");
		}
		buf_puts(b, "</td>");
		break;
	case US_MISSING: {
		int64_t late = pg->s->now - su->due_at;

		buf_puts(b, "<td class=\"st miss\">&#10007; Chưa nộp");
		if (su->proposed)    /* link.c, the mailbox: to be confirmed */
			buf_puts(b, "<div class=\"muted\">Đơn vị báo đã gửi, "
				 "chờ xác nhận</div>");
		buf_puts(b, "</td><td>");
		if (late >= DAY)
			buf_printf(b, "quá hạn %" PRId64 " ngày", late / DAY);
		else
			buf_printf(b, "quá hạn %" PRId64 " giờ",
				   late / 3600 > 0 ? late / 3600 : 1);
		buf_puts(b, "</td>");
		break;
	}
	case US_NOTDUE:
		buf_puts(b, "<td class=\"st nd\">&#8230; Chưa đến hạn");
		if (su->proposed)
			buf_puts(b, "<div class=\"muted\">Đơn vị báo đã gửi, "
				 "chờ xác nhận</div>");
		buf_puts(b, "</td><td></td>");
		break;
	}
	if (pg->logged) {
		buf_puts(b, "<td>");
		if (su->state != US_SUBMITTED && su->state != US_NIL) {
			buf_puts(b, "<form class=\"i\" method=\"post\" "
				 "action=\"/mark\">");
			put_hidden(b, "occurrence", so->o.id);
			put_hidden(b, "unit", su->u->id);
			put_hidden(b, "csrf", pg->csrf);
			if (pg->f->cycle != NULL)
				put_hidden(b, "cycle", pg->f->cycle->id);
			put_hidden(b, "group", pg->f->group);
			buf_puts(b, "<button type=\"submit\">Ghi nhận đã nộp"
				 "</button> <button type=\"submit\" name=\"nil\" "
				 "value=\"1\">Không phát sinh</button></form>");
		}
		buf_puts(b, "</td>");
	}
	buf_puts(b, "</tr>\n");
}

/* rows of one kind: missing, late, not due, on time */
enum rowkind { RK_MISS, RK_LATE, RK_NOTDUE, RK_OK };

static bool
row_is(const struct st_unit *su, enum rowkind k)
{
	switch (k) {
	case RK_MISS: return su->state == US_MISSING;
	case RK_LATE: return (su->state == US_SUBMITTED ||
			      su->state == US_NIL) && su->late;
	case RK_NOTDUE: return su->state == US_NOTDUE;
	case RK_OK: return (su->state == US_SUBMITTED ||
			    su->state == US_NIL) && !su->late;
	}
	return false;
}

static void
page_table_head(struct page *pg)
{
	buf_puts(pg->b, "<table><thead><tr><th>Đơn vị</th><th>Tình trạng</th>"
		 "<th>Thời điểm nhận</th>");
	if (pg->logged)
		buf_puts(pg->b, "<th></th>");
	buf_puts(pg->b, "</tr></thead><tbody>\n");
}

static void
page_rows(struct page *pg, const struct st_occ *so, enum rowkind k)
{
	size_t shown = 0, more = 0;

	for (size_t j = 0; j < so->nu; j++) {
		if (!row_is(&so->u[j], k))
			continue;
		if (shown < PAGE_ROWS_MAX) {
			page_unit_row(pg, so, &so->u[j]);
			shown++;
		} else {
			more++;
		}
	}
	/* 10,000 communes would make a page of megabytes nobody reads:
	 * the counts above stay exact, the filter shows the rest */
	if (more > 0)
		buf_printf(pg->b, "<tr><td colspan=\"%d\" class=\"muted\">"
			   "&#8230; và %zu đơn vị khác — chọn nhóm đơn vị "
			   "để xem hết</td></tr>\n", pg->logged ? 4 : 3, more);
}

static void
page_section(struct page *pg, const struct st_occ *so)
{
	struct buf *b = pg->b;
	char due[32], d1[16], d2[16];
	size_t nok = so->nsub - so->nlate;
	bool open = so->nmiss > 0 || so->nnotdue > 0;

	buf_puts(b, "<section id=\"");
	put_anchor(b, so->o.id);
	buf_printf(b, "\"><details%s><summary><h2>", open ? " open" : "");
	html_esc(b, so->o.cycle->title ? so->o.cycle->title : so->o.cycle->id);
	status_fmt_due(&so->o, due, sizeof(due));
	buf_printf(b, "</h2> — hạn %s — đã nộp <b>%zu/%zu</b></summary>\n",
		   due, so->nsub, so->nu);
	buf_puts(b, "<p class=\"muted\">Mã kỳ: ");
	html_esc(b, so->o.id);
	if (so->o.extended) {
		ymd_format_vn(so->o.was_due, d1);
		buf_printf(b, " · Đã gia hạn (hạn theo kế hoạch %s)", d1);
	}
	if (so->o.has_period) {
		ymd_format_vn(so->o.period_from, d1);
		ymd_format_vn(so->o.period_to, d2);
		buf_printf(b, " · Kỳ số liệu: %s – %s", d1, d2);
	}
	buf_printf(b, "</p>\n<p><span class=\"st ok\">&#10003; Đúng hạn: %zu"
		   "</span> <span class=\"st late\">&#9888; Nộp muộn: %zu</span>"
		   " <span class=\"st miss\">&#10007; Chưa nộp: %zu</span>"
		   " <span class=\"st nd\">&#8230; Chưa đến hạn: %zu</span></p>\n",
		   nok, so->nlate, so->nmiss, so->nnotdue);

	/* What needs attention first; at hundreds of units the rest folds
	 * away so the page stays readable. */
	if (so->nu <= PAGE_COMPACT) {
		page_table_head(pg);
		page_rows(pg, so, RK_MISS);
		page_rows(pg, so, RK_LATE);
		page_rows(pg, so, RK_NOTDUE);
		page_rows(pg, so, RK_OK);
		buf_puts(b, "</tbody></table>\n");
	} else {
		if (so->nmiss + so->nlate > 0) {
			page_table_head(pg);
			page_rows(pg, so, RK_MISS);
			page_rows(pg, so, RK_LATE);
			buf_puts(b, "</tbody></table>\n");
		}
		if (so->nnotdue > 0) {
			buf_printf(b, "<details><summary>Chưa đến hạn (%zu)"
				   "</summary>", so->nnotdue);
			page_table_head(pg);
			page_rows(pg, so, RK_NOTDUE);
			buf_puts(b, "</tbody></table></details>\n");
		}
		if (nok > 0) {
			buf_printf(b, "<details><summary>Đúng hạn (%zu)"
				   "</summary>", nok);
			page_table_head(pg);
			page_rows(pg, so, RK_OK);
			buf_puts(b, "</tbody></table></details>\n");
		}
	}
	buf_puts(b, "</details></section>\n");
}

static void
page_filters(struct page *pg, const char *token)
{
	const struct conf *c = pg->a->conf;
	struct buf *b = pg->b;

	buf_puts(b, "<form method=\"get\" action=\"/\">"
		 "<label>Nhóm đơn vị <select name=\"group\">");
	put_opt(b, "", "Tất cả", pg->f->group == NULL);
	for (size_t i = 0; i < c->ngroups; i++)
		put_opt(b, c->groups[i], c->groups[i],
			pg->f->group != NULL &&
			strcmp(pg->f->group, c->groups[i]) == 0);
	buf_puts(b, "</select></label> <label>Loại báo cáo <select "
		 "name=\"cycle\">");
	put_opt(b, "", "Tất cả", pg->f->cycle == NULL);
	for (size_t i = 0; i < c->ncycles; i++)
		put_opt(b, c->cycles[i].id,
			c->cycles[i].title ? c->cycles[i].title
					   : c->cycles[i].id,
			pg->f->cycle == &c->cycles[i]);
	buf_puts(b, "</select></label> ");
	put_hidden(b, "token", token);
	buf_puts(b, "<button type=\"submit\">Lọc</button></form>\n");
}

static void
page_login(struct page *pg)
{
	struct buf *b = pg->b;

	if (auth_admin_token(pg->a) == NULL)
		return;
	if (pg->logged) {
		const char *name = pg->who;

		/* which admin: what they record carries their name */
		for (size_t i = 0; name != NULL && i < pg->a->conf->nadmins; i++)
			if (strcmp(pg->a->conf->admins[i].id, name) == 0 &&
			    pg->a->conf->admins[i].name != NULL)
				name = pg->a->conf->admins[i].name;
		buf_puts(b, "<form class=\"i\" method=\"post\" action=\"/logout\">"
			 "<span class=\"muted\">Đã đăng nhập quản trị");
		if (name != NULL) {
			buf_puts(b, ": ");
			html_esc(b, name);
		}
		buf_puts(b, "</span> ");
		put_hidden(b, "csrf", pg->csrf);
		buf_puts(b, "<button type=\"submit\">Đăng xuất</button></form>");
		return;
	}
	buf_puts(b, "<form class=\"i\" method=\"post\" action=\"/login\">"
		 "<label>Mã quản trị <input type=\"password\" name=\"token\" "
		 "autocomplete=\"current-password\" required></label> "
		 "<button type=\"submit\">Đăng nhập</button></form>");
}

static void
page_head(struct buf *b, bool refresh)
{
	buf_puts(b, "<!DOCTYPE html>\n<html lang=\"vi\"><head>"
		 "<meta charset=\"utf-8\">"
		 "<meta name=\"viewport\" content=\"width=device-width,"
		 "initial-scale=1\">");
	/* the page is left open all day: keep it current without scripts */
	if (refresh)
		buf_puts(b, "<meta http-equiv=\"refresh\" content=\"120\">");
	buf_printf(b, "<title>Tình hình nộp báo cáo</title><style>%s</style>"
		   "</head><body>\n", page_css);
}

/* The k-th occurrence on the page: those already due, the latest first
 * (where units are missing now), then the upcoming ones, soonest first. */
static size_t
page_order(const struct status *s, size_t k)
{
	size_t npast = 0;

	while (npast < s->nocc && s->occ[npast].o.due_at <= s->now)
		npast++;
	return k < npast ? npast - 1 - k : k;
}

static void
page_render(struct page *pg, const char *token, const char *notice)
{
	const struct conf *c = pg->a->conf;
	const struct status *s = pg->s;
	struct buf *b = pg->b;
	char now[20];

	page_head(b, true);
	buf_puts(b, "<div class=\"bar\"><div><h1>Tình hình nộp báo cáo</h1>"
		 "<div class=\"muted\">");
	html_esc(b, c->secretariat.name);
	tz_format_vn(c->tz, s->now, now);
	buf_printf(b, " · Cập nhật lúc %s</div></div><div>", now);
	page_login(pg);
	buf_puts(b, "</div></div>\n");
	if (notice != NULL) {
		buf_puts(b, "<p class=\"err\">");
		html_esc(b, notice);
		buf_puts(b, "</p>\n");
	}
	page_filters(pg, token);

	if (s->nocc == 0) {
		buf_puts(b, "<p>Không có kỳ báo cáo nào trong khoảng thời gian "
			 "này.</p>\n");
	} else {
		/* overview, in the order of the sections below */
		buf_puts(b, "<table><thead><tr><th>Kỳ báo cáo</th><th>Hạn nộp"
			 "</th><th>Đã nộp</th><th>Đúng hạn</th><th>Nộp muộn"
			 "</th><th>Chưa nộp</th><th>Chưa đến hạn</th></tr>"
			 "</thead><tbody>\n");
		for (size_t k = 0; k < s->nocc; k++) {
			const struct st_occ *so = &s->occ[page_order(s, k)];
			char due[32];

			status_fmt_due(&so->o, due, sizeof(due));
			buf_puts(b, "<tr><td><a href=\"#");
			put_anchor(b, so->o.id);
			buf_puts(b, "\">");
			html_esc(b, so->o.cycle->title ? so->o.cycle->title
						       : so->o.cycle->id);
			buf_printf(b, "</a></td><td>%s</td><td class=\"n\">"
				   "%zu/%zu</td><td class=\"n\">%zu</td>"
				   "<td class=\"n\">%zu</td><td class=\"n%s\">"
				   "%zu</td><td class=\"n\">%zu</td></tr>\n",
				   due, so->nsub, so->nu, so->nsub - so->nlate,
				   so->nlate, so->nmiss > 0 ? " miss" : "",
				   so->nmiss, so->nnotdue);
		}
		buf_puts(b, "</tbody></table>\n");
		for (size_t k = 0; k < s->nocc; k++)
			page_section(pg, &s->occ[page_order(s, k)]);
	}

	if (s->nfail > 0) {
		buf_puts(b, "<section><h2>Thông báo gửi thất bại</h2><table>"
			 "<thead><tr><th>Thời điểm</th><th>Tình trạng</th>"
			 "<th>Kỳ báo cáo</th>"
			 "<th>Đơn vị</th><th>Bước</th><th>Kênh</th><th>Lỗi</th>"
			 "</tr></thead><tbody>\n");
		for (size_t i = 0; i < s->nfail; i++) {
			const struct st_fail *x = &s->fail[i];
			char t[20];

			tz_format_vn(c->tz, x->at, t);
			buf_printf(b, "<tr><td>%s</td><td>%s</td><td>", t,
				   x->retrying ? "Đang thử lại" : "Thất bại");
			html_esc(b, x->occ);
			buf_puts(b, "</td><td>");
			html_esc(b, x->unit);
			buf_puts(b, "</td><td>");
			html_esc(b, x->step);
			buf_puts(b, " (");
			html_esc(b, x->aud);
			buf_puts(b, ")</td><td>");
			html_esc(b, x->ch);
			buf_puts(b, "</td><td>");
			html_esc(b, x->err);
			buf_puts(b, "</td></tr>\n");
		}
		buf_puts(b, "</tbody></table></section>\n");
	}
	if (s->nref > 0) {
		/* one address refused; the unit's others got the mail */
		buf_puts(b, "<section><h2>Địa chỉ thư bị máy chủ từ chối</h2>"
			 "<table><thead><tr><th>Thời điểm</th>"
			 "<th>Kỳ báo cáo</th><th>Đơn vị</th><th>Bước</th>"
			 "<th>Địa chỉ</th><th>Trả lời của máy chủ</th>"
			 "</tr></thead><tbody>\n");
		for (size_t i = 0; i < s->nref; i++) {
			const struct st_refused *x = &s->ref[i];
			char t[20];

			tz_format_vn(c->tz, x->at, t);
			buf_printf(b, "<tr><td>%s</td><td>", t);
			html_esc(b, x->occ);
			buf_puts(b, "</td><td>");
			html_esc(b, x->unit);
			buf_puts(b, "</td><td>");
			html_esc(b, x->step);
			buf_puts(b, " (");
			html_esc(b, x->aud);
			buf_puts(b, ")</td><td>");
			html_esc(b, x->addr);
			buf_puts(b, "</td><td>");
			html_esc(b, x->reply);
			buf_puts(b, "</td></tr>\n");
		}
		buf_puts(b, "</tbody></table></section>\n");
	}
	/* a reader let in by ?token= needs it on the JSON too */
	buf_puts(b, "<p class=\"muted\">Dữ liệu dạng JSON: <a href=\""
		 "/status.json");
	if (token != NULL) {
		buf_puts(b, "?token=");
		url_esc(b, token);
	}
	buf_puts(b, "\">/status.json</a></p>\n</body></html>\n");
}

static void
page_locked(struct app *a, struct http_resp *r, bool login_failed)
{
	struct buf *b = &r->body;

	r->status = 401;
	r->content_type = DOC_HTML;
	buf_reset(b);
	page_head(b, false);
	buf_puts(b, "<h1>Tình hình nộp báo cáo</h1>");
	/* a failed login lands here when the page needs a token */
	if (login_failed)
		buf_puts(b, "<p class=\"err\">Mã quản trị không đúng.</p>");
	buf_puts(b, "<p>Trang này cần mã truy "
		 "cập.</p><form method=\"get\" action=\"/\"><label>Mã truy cập "
		 "<input type=\"password\" name=\"token\" required></label> "
		 "<button type=\"submit\">Xem</button></form>\n");
	if (auth_admin_token(a) != NULL)
		buf_puts(b, "<form method=\"post\" action=\"/login\"><label>Mã "
			 "quản trị <input type=\"password\" name=\"token\" "
			 "required></label> <button type=\"submit\">Đăng nhập"
			 "</button></form>\n");
	buf_puts(b, "</body></html>\n");
}


struct page_ctx {
	struct app *a;
	const char *token;
};

/* the page as every anonymous reader sees it, for the views in memory */
static void
build_page(const struct conf *c, const struct status *s,
	   const struct status_filter *f, void *ctx, struct buf *out)
{
	const struct page_ctx *pc = ctx;
	struct page pg = { .a = pc->a, .s = s, .f = f, .b = out };

	(void)c;
	page_render(&pg, pc->token, NULL);
}

/* The anonymous page (with the calendar token or without) comes from
 * memory; an admin's (CSRF tokens, buttons) or one with a notice is
 * rendered per request from the model in memory, which costs a few
 * hundred rows at most (PAGE_ROWS_MAX). */
void
page_get(struct app *a, const struct http_req *q, struct http_resp *r)
{
	struct form args;
	struct status_filter f;
	const char *err, *tok = NULL, *cal = a->conf->daemon.calendar_token;
	tstamp now = clock_now(&a->clk);
	bool failed;
	struct page pg;

	form_parse(&args, q->query, q->query ? strlen(q->query) : 0);
	failed = form_get(&args, "login") != NULL;
	if (!auth_read_allowed(a, q, &args, now)) {
		page_locked(a, r, failed);
		goto out;
	}
	err = status_filter_set(a->conf, form_get(&args, "cycle"),
				form_get(&args, "group"), &f);
	if (err != NULL) {
		resp_html_msg(r, 400, strcmp(err, "unknown cycle") == 0
			      ? "Không có loại báo cáo này."
			      : "Không có nhóm đơn vị này.");
		goto out;
	}
	if (cal != NULL && cal[0] != '\0')
		tok = form_get(&args, "token");
	memset(&pg, 0, sizeof(pg));
	pg.logged = auth_session(a, q, now, pg.csrf);
	if (pg.logged)
		pg.who = auth_actor(a, q, now);
	if (!pg.logged && !failed && (tok == NULL || ct_streq(tok, cal))) {
		struct page_ctx pc = { a, tok != NULL ? cal : NULL };
		struct doc *d;

		d = views_doc(a->views, a->conf, a->db, now, &f,
			      tok != NULL ? VIEW_PAGE_TOKEN : VIEW_PAGE,
			      DOC_HTML, build_page, &pc);
		if (d == NULL) {
			resp_html_msg(r, 500, "Không đọc được dữ liệu.");
			goto out;
		}
		r->status = 200;
		r->doc = doc_ref(d);
		goto out;
	}
	pg.a = a;
	pg.f = &f;
	pg.b = &r->body;
	pg.s = views_status(a->views, a->conf, a->db, now, &f);
	if (pg.s == NULL) {
		resp_html_msg(r, 500, "Không đọc được dữ liệu.");
		goto out;
	}
	r->status = 200;
	r->content_type = DOC_HTML;
	buf_reset(&r->body);
	page_render(&pg, tok, failed ? "Mã quản trị không đúng." : NULL);
out:
	form_free(&args);
}

void
page_mark(struct app *a, const struct http_req *q, struct http_resp *r)
{
	const struct conf *c = a->conf;
	struct form fm;
	struct occ o;
	const struct unit *u;
	const char *occ, *unit, *cy, *g;
	tstamp now = clock_now(&a->clk);
	struct buf loc;
	int rc;

	if (req_form(q, r, &fm) < 0)
		return;
	if (auth_form(a, q, &fm, now, r) < 0)
		goto out;
	occ = form_get(&fm, "occurrence");
	unit = form_get(&fm, "unit");
	u = unit != NULL ? conf_unit(c, unit) : NULL;
	if (occ == NULL || sched_occurrence(c, occ, &o) < 0 || u == NULL) {
		resp_html_msg(r, 400, "Không có kỳ báo cáo hoặc đơn vị này.");
		goto out;
	}
	/* as the API: a unit that does not owe this report has none to mark */
	if (!conf_cycle_has(o.cycle, (size_t)(u - c->units))) {
		resp_html_msg(r, 400, "Đơn vị này không nộp báo cáo kỳ này.");
		goto out;
	}
	rc = ledger_receive(a->db, o.id, u->id, now,
			    form_get(&fm, "nil") != NULL, "page",
			    auth_actor(a, q, now), NULL, now);
	if (rc < 0 && db_busy(a->db)) {
		/* locked by another process: not waited for (see api.c) */
		resp_html_msg(r, 503, "Dữ liệu đang bận, xin thử lại sau.");
		resp_hdr(r, "Retry-After", "1");
		goto out;
	}
	if (rc < 0) {
		resp_html_msg(r, 500, "Không ghi được dữ liệu.");
		goto out;
	}
	if (rc == 0) {
		log_info("received %s %s (status page)", o.id, u->id);
		if (a->changed != NULL)
			a->changed(a);
	}
	/* back to the same view; the ids are checked, so safe in a URL */
	buf_init(&loc);
	buf_puts(&loc, "/");
	cy = form_get(&fm, "cycle");
	g = form_get(&fm, "group");
	if (cy != NULL && conf_cycle(c, cy) != NULL)
		buf_printf(&loc, "?cycle=%s", cy);
	if (g != NULL && valid_id(g))
		buf_printf(&loc, "%sgroup=%s", loc.len > 1 ? "&" : "?", g);
	resp_redirect(r, buf_str(&loc));
	buf_free(&loc);
out:
	form_free(&fm);
}
