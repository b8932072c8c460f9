/*
 * page.c - the status page at / (HTML, no JavaScript), the page a
 * secretariat leaves open all day, and its forms that change state (for a
 * logged-in admin, each with the session's CSRF token, each answered by a
 * 303 back to the same filtered view):
 *   POST /mark     record a report (nil=1: "không phát sinh")
 *   POST /undo     remove a recorded report
 *   POST /extend   extend a deadline, for everyone or one unit (cancel=1
 *                  removes the extension)
 *   POST /proposal do=confirm records a proposed report (the mailbox, a
 *                  unit's link) with its source and time; do=reject drops
 *                  the proposal
 * Order: the occurrences not yet due, soonest first, then those past,
 * latest first; failed notices are summed up at the top.  The model comes
 * from status.c, who may see and do what from auth.c.
 */
#include "cutoffd.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#define DAY 86400
#define PAGE_COMPACT 40             /* above: on-time rows fold away */
#define PAGE_ROWS_MAX 300           /* unit rows of one kind per section */
#define FAILED_SHOWN_MAX 50         /* status.c's FAILED_MAX: the list's cap */

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
	".st.prop{color:#6a4a00;font-weight:bold}.muted.prop{white-space:normal}"
	"section{border:1px solid #ddd;border-radius:4px;margin:1em 0;"
	"padding:.5em 1em}"
	"summary{cursor:pointer}"
	"form.i{display:inline;margin:0}"
	".bar{display:flex;flex-wrap:wrap;gap:1em;align-items:center;"
	"justify-content:space-between}"
	".muted{color:#666;font-size:.9em}"
	".err{color:#7a1010}body>form{margin:.6em 0}"
	".alert{border:2px solid #b22;background:#fff5f5;padding:.5em 1em;"
	"border-radius:4px;margin:.6em 0}.alert h2{color:#7a1010}"
	".ext{background:#e6efff;color:#14366b}"
	".days{white-space:nowrap;font-weight:bold}"
	"details.act{display:inline-block}"
	"details.act form{margin:.3em 0}"
	"input[type=text]{width:14em}";

struct page {
	struct app *a;
	const struct status *s;
	const struct status_filter *f;
	bool logged;
	char csrf[65];
	const char *who;         /* the admin logged in (its id) */
	int64_t today;           /* local day number of s->now */
	struct buf *b;
};

/* The time left or past of a deadline as people say it: "còn 5 ngày",
 * "hạn hôm nay", "quá hạn 7 ngày" (calendar days: due by 24:00 on 13/03,
 * the 14th is one day late), "quá hạn 3 giờ" on the due day itself. */
static void
put_days(struct page *pg, tstamp due_at, struct ymd due)
{
	int64_t dd = days_from_civil(due.y, due.m, due.d) - pg->today;
	tstamp now = pg->s->now;

	if (now < due_at) {
		if (dd <= 0)
			buf_puts(pg->b, "<span class=\"days\">hạn hôm nay</span>");
		else
			buf_printf(pg->b, "<span class=\"days\">còn %" PRId64
				   " ngày</span>", dd);
	} else if (dd < 0) {
		buf_printf(pg->b, "<span class=\"days miss\">quá hạn %" PRId64
			   " ngày</span>", -dd);
	} else {
		int64_t h = (now - due_at) / 3600;

		buf_printf(pg->b, "<span class=\"days miss\">quá hạn %" PRId64
			   " giờ</span>", h > 0 ? h : 1);
	}
}

static void
put_label(struct buf *b, const struct conf *c, const struct occ *o)
{
	char l[512];

	occ_label(c, o, l, sizeof(l));
	html_esc(b, l);
}

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

/* the filter of the view, so that a form's 303 comes back to it */
static void
put_view(struct page *pg)
{
	if (pg->f->cycle != NULL)
		put_hidden(pg->b, "cycle", pg->f->cycle->id);
	put_hidden(pg->b, "group", pg->f->group);
}

static void
form_open(struct page *pg, const char *action, const char *occ,
	  const char *unit)
{
	buf_printf(pg->b, "<form class=\"i\" method=\"post\" action=\"%s\">",
		   action);
	put_hidden(pg->b, "occurrence", occ);
	put_hidden(pg->b, "unit", unit);
	put_hidden(pg->b, "csrf", pg->csrf);
	put_view(pg);
}

/* An extension form: for one unit (unit set) or the whole occurrence;
 * with a button to cancel the one in force. */
static void
put_extend(struct page *pg, const struct st_occ *so, const char *unit,
	   bool extended)
{
	struct buf *b = pg->b;
	struct ymd plan = so->o.extended ? so->o.was_due : so->o.due;
	char min[16];

	snprintf(min, sizeof(min), "%04d-%02d-%02d", plan.y % 10000,
		 plan.m % 100, plan.d % 100);
	buf_printf(b, "<details class=\"act\"><summary>%s</summary>",
		   unit != NULL ? "Gia hạn" : "Gia hạn cho mọi đơn vị");
	form_open(pg, "/extend", so->o.id, unit);
	buf_printf(b, "<label>Đến ngày <input type=\"date\" name=\"due\" "
		   "min=\"%s\" required></label> <label>Ghi chú <input "
		   "type=\"text\" name=\"note\" maxlength=\"500\"></label> "
		   "<button type=\"submit\">Gia hạn</button></form>", min);
	if (extended) {
		buf_puts(b, " ");
		form_open(pg, "/extend", so->o.id, unit);
		buf_puts(b, "<input type=\"hidden\" name=\"cancel\" value=\"1\">"
			 "<button type=\"submit\">Bỏ gia hạn</button></form>");
	}
	buf_puts(b, "</details>");
}

/* A proposal under the state: where it came from and its evidence (the
 * mail's subject and Message-ID, or the unit's link); what the unit or a
 * remote mail said is escaped. */
static void
put_proposal(struct page *pg, const struct st_occ *so,
	     const struct st_unit *su)
{
	struct buf *b = pg->b;
	struct ledger_proposal p;
	char t[20];

	if (!su->proposed)
		return;
	buf_puts(b, "<div class=\"st prop\">&#9993; Đề xuất — chờ xác nhận"
		 "</div><div class=\"muted prop\">");
	if (ledger_proposal_get(pg->a->db, so->o.id, su->u->id, &p) != 0) {
		html_esc(b, su->proposed_source);
		buf_puts(b, "</div>");
		return;
	}
	tz_format_vn(pg->a->conf->tz, p.at, t);
	if (strcmp(p.source, "imap") == 0) {
		buf_printf(b, "thư gửi %s", t);
		if (p.actor[0] != '\0') {
			buf_puts(b, " từ ");
			html_esc(b, p.actor);
		}
		if (p.note != NULL) {
			buf_puts(b, ": «");
			html_esc(b, p.note);
			buf_puts(b, "»");
		}
		if (p.detail != NULL) {
			buf_puts(b, " <span class=\"mid\">");
			html_esc(b, p.detail);
			buf_puts(b, "</span>");
		}
	} else if (strcmp(p.source, "link") == 0) {
		buf_printf(b, "Đơn vị báo đã gửi (đường dẫn xác nhận, link) "
			   "lúc %s", t);
	} else {
		html_esc(b, p.source);
		buf_printf(b, " %s", t);
	}
	buf_puts(b, "</div>");
	ledger_proposal_clear(&p);
}

/* A refusal that is a bounce (imap.c writes the RFC 3464 report's status
 * and diagnostic after this prefix): the reason, else NULL. */
static const char *
bounce_reason(const char *reply)
{
	static const char pfx[] = "bounced (delivery report): ";

	return strncmp(reply, pfx, sizeof(pfx) - 1) == 0
		? reply + sizeof(pfx) - 1 : NULL;
}

static void
page_unit_row(struct page *pg, const struct st_occ *so,
	      const struct st_unit *su)
{
	struct buf *b = pg->b;
	const struct conf *c = pg->a->conf;
	bool sub = su->state == US_SUBMITTED || su->state == US_NIL;
	char t[20];

	buf_puts(b, "<tr><td>");
	html_esc(b, su->u->name ? su->u->name : su->u->id);
	buf_puts(b, " <span class=\"muted\">");
	html_esc(b, su->u->id);
	buf_puts(b, "</span>");
	if (su->own_due) {
		ymd_format_vn(su->due, t);
		buf_printf(b, "<div class=\"st ext\">&#8677; gia hạn đến %s"
			   "</div>", t);
	}
	buf_puts(b, "</td>");
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
	case US_MISSING:
		buf_puts(b, "<td class=\"st miss\">&#10007; Chưa nộp");
		put_proposal(pg, so, su);
		buf_puts(b, "</td><td>");
		put_days(pg, su->due_at, su->due);
		buf_puts(b, "</td>");
		break;
	case US_NOTDUE:
		buf_puts(b, "<td class=\"st nd\">&#8230; Chưa đến hạn");
		put_proposal(pg, so, su);
		buf_puts(b, "</td><td>");
		put_days(pg, su->due_at, su->due);
		buf_puts(b, "</td>");
		break;
	}
	if (pg->logged) {
		buf_puts(b, "<td>");
		if (!sub && su->proposed) {
			form_open(pg, "/proposal", so->o.id, su->u->id);
			buf_puts(b, "<button type=\"submit\" name=\"do\" "
				 "value=\"confirm\">Xác nhận</button> <button "
				 "type=\"submit\" name=\"do\" value=\"reject\">"
				 "Bác bỏ</button></form> ");
		}
		if (sub) {
			form_open(pg, "/undo", so->o.id, su->u->id);
			buf_puts(b, "<button type=\"submit\">Hủy ghi nhận"
				 "</button></form>");
		} else {
			form_open(pg, "/mark", so->o.id, su->u->id);
			buf_puts(b, "<button type=\"submit\">Ghi nhận đã nộp"
				 "</button> <button type=\"submit\" name=\"nil\" "
				 "value=\"1\">Không phát sinh</button></form>");
			buf_puts(b, " ");
			put_extend(pg, so, su->u->id, su->own_due);
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
		 "<th>Thời hạn / thời điểm nhận</th>");
	if (pg->logged)
		buf_puts(pg->b, "<th>Thao tác</th>");
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
	put_label(b, pg->a->conf, &so->o);
	status_fmt_due(&so->o, due, sizeof(due));
	buf_printf(b, "</h2> — hạn %s — ", due);
	put_days(pg, so->o.due_at, so->o.due);
	buf_printf(b, " — đã nộp <b>%zu/%zu</b></summary>\n", so->nsub, so->nu);
	buf_puts(b, "<p class=\"muted\">Mã kỳ: ");
	html_esc(b, so->o.id);
	if (so->o.has_period) {
		ymd_format_vn(so->o.period_from, d1);
		ymd_format_vn(so->o.period_to, d2);
		buf_printf(b, " · Kỳ số liệu: %s – %s", d1, d2);
	}
	buf_puts(b, "</p>\n");
	if (so->o.extended) {
		ymd_format_vn(so->o.due, d1);
		ymd_format_vn(so->o.was_due, d2);
		buf_printf(b, "<p class=\"st ext\">&#8677; Đã gia hạn cho mọi đơn "
			   "vị: gia hạn đến %s (hạn theo kế hoạch %s)</p>\n", d1,
			   d2);
	}
	if (pg->logged) {
		buf_puts(b, "<div>");
		put_extend(pg, so, NULL, so->o.extended);
		buf_puts(b, "</div>\n");
	}
	buf_printf(b, "<p><span class=\"st ok\">&#10003; Đúng hạn: %zu"
		   "</span> <span class=\"st late\">&#9888; Nộp muộn: %zu</span>"
		   " <span class=\"st miss\">&#10007; Chưa nộp: %zu</span>"
		   " <span class=\"st nd\">&#8230; Chưa đến hạn: %zu</span>",
		   nok, so->nlate, so->nmiss, so->nnotdue);
	if (so->nnil > 0)
		buf_printf(b, " <span class=\"st ok\">&#8709; trong đó không "
			   "phát sinh: %zu</span>", so->nnil);
	buf_puts(b, "</p>\n");

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
	for (size_t i = 0; i < c->ngroups; i++) {
		const char *name = conf_group_name(c, c->groups[i]);

		put_opt(b, c->groups[i], name != NULL ? name : c->groups[i],
			pg->f->group != NULL &&
			strcmp(pg->f->group, c->groups[i]) == 0);
	}
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

/* The page's order: first what is being chased now and what comes next,
 * by due date (as extended): occurrences past due that still have units
 * missing and are inside their policy's `until` (30 days without one),
 * then those not yet due, soonest first; below them the rest of the
 * past, latest first.  The old history never sits above the report due
 * in five days. */
#define CURRENT_DEFAULT (30 * DAY)

struct okey {
	size_t i;
	bool current;
	tstamp due;
	const char *id;
};

static bool
occ_current(const struct st_occ *so, tstamp now)
{
	const struct policy *p = so->o.cycle->policy;
	int64_t until = p != NULL && p->until > 0 ? p->until : CURRENT_DEFAULT;

	return so->o.due_at > now || (so->nmiss > 0 && now < so->o.due_at + until);
}

static int
order_cmp(const void *pa, const void *pb)
{
	const struct okey *a = pa, *b = pb;

	if (a->current != b->current)
		return a->current ? -1 : 1;
	if (a->due != b->due)         /* current: soonest; past: latest */
		return (a->due < b->due) == a->current ? -1 : 1;
	return strcmp(a->id, b->id);
}

/* indices into s->occ in the page's order (free it) */
static size_t *
page_order(const struct status *s)
{
	struct okey *k = xcalloc(s->nocc + 1, sizeof(*k));
	size_t *v = xcalloc(s->nocc + 1, sizeof(*v));

	for (size_t i = 0; i < s->nocc; i++)
		k[i] = (struct okey){ i, occ_current(&s->occ[i], s->now),
				      s->occ[i].o.due_at, s->occ[i].o.id };
	qsort(k, s->nocc, sizeof(*k), order_cmp);
	for (size_t i = 0; i < s->nocc; i++)
		v[i] = k[i].i;
	free(k);
	return v;
}

static const char *
aud_vn(const char *aud)
{
	if (strcmp(aud, "unit") == 0)
		return "đơn vị";
	if (strcmp(aud, "head") == 0)
		return "thủ trưởng";
	if (strcmp(aud, "secretariat") == 0)
		return "thường trực";
	if (strcmp(aud, "chief") == 0)
		return "trưởng ban";
	return aud;
}

/* The address a notice went to, as the configuration has it now (the
 * outbox row's own list is not in the model) */
static void
put_fail_addr(struct page *pg, const struct st_fail *x)
{
	const struct conf *c = pg->a->conf;
	const struct unit *u = conf_unit(c, x->unit);
	enum audience aud;
	enum channel ch;
	char *r;

	if (outbox_audience(x->aud, &aud) < 0 || outbox_channel(x->ch, &ch) < 0)
		return;
	r = outbox_recipients(c, u, aud, ch);
	if (r != NULL)
		html_esc(pg->b, r);
	free(r);
}

static void
put_fail_unit(struct page *pg, const struct st_fail *x)
{
	const struct unit *u = conf_unit(pg->a->conf, x->unit);

	html_esc(pg->b, u != NULL && u->name != NULL ? u->name : x->unit);
}

/* At the top: how many notices did not go out, whom they were for, where
 * and why, so that someone phones the unit today. */
static void
page_fail_summary(struct page *pg)
{
	const struct status *s = pg->s;
	struct buf *b = pg->b;
	size_t nfailed = 0, nretry = 0, shown = 0;

	for (size_t i = 0; i < s->nfail; i++)
		*(s->fail[i].retrying ? &nretry : &nfailed) += 1;
	buf_puts(b, "<div class=\"alert\" id=\"canh-bao\"><h2>&#9888; ");
	if (nfailed > 0)
		buf_printf(b, "%zu%s thư không gửi được", nfailed,
			   nfailed + nretry >= FAILED_SHOWN_MAX ? "+" : "");
	if (nretry > 0)
		buf_printf(b, "%s%zu thư đang chờ gửi lại", nfailed > 0 ? ", " : "",
			   nretry);
	if (s->nref > 0)
		buf_printf(b, "%s%zu địa chỉ bị từ chối",
			   nfailed + nretry > 0 ? ", " : "", s->nref);
	buf_puts(b, "</h2><ul>\n");
	for (size_t i = 0; i < s->nfail && shown < 5; i++, shown++) {
		const struct st_fail *x = &s->fail[i];

		buf_puts(b, "<li>");
		put_fail_unit(pg, x);
		buf_printf(b, " (%s) · ", aud_vn(x->aud));
		put_fail_addr(pg, x);
		buf_puts(b, " · <span class=\"muted\">");
		html_esc(b, x->err[0] != '\0' ? x->err : "không rõ lý do");
		buf_printf(b, "</span>%s</li>\n", x->retrying ?
			   " <i>(sẽ thử lại)</i>" : "");
	}
	for (size_t i = 0; i < s->nref && shown < 5; i++, shown++) {
		const struct st_refused *x = &s->ref[i];
		const struct unit *u = conf_unit(pg->a->conf, x->unit);

		const char *bounce = bounce_reason(x->reply);

		buf_puts(b, "<li>");
		html_esc(b, u != NULL && u->name != NULL ? u->name : x->unit);
		buf_printf(b, " (%s) · ", aud_vn(x->aud));
		if (bounce != NULL) {
			/* a delivery report came back: the address takes no
			 * mail at all, not one refusal */
			buf_puts(b, "<b>Địa chỉ thư của đơn vị không nhận được "
				 "thư:</b> ");
			html_esc(b, x->addr);
			buf_puts(b, " <span class=\"muted\">(");
			html_esc(b, bounce);
			buf_puts(b, ")</span></li>\n");
			continue;
		}
		html_esc(b, x->addr);
		buf_puts(b, " · <span class=\"muted\">");
		html_esc(b, x->reply);
		buf_puts(b, "</span> <i>(địa chỉ bị từ chối)</i></li>\n");
	}
	buf_puts(b, "</ul>");
	if (s->nfail + s->nref > shown)
		buf_printf(b, "<p>… và %zu thư khác.</p>",
			   s->nfail + s->nref - shown);
	buf_printf(b, "<a href=\"#%s\">Xem chi tiết</a></div>\n",
		   s->nfail > 0 ? "that-bai" : "tu-choi");
}

static void
page_fail_table(struct page *pg)
{
	const struct conf *c = pg->a->conf;
	const struct status *s = pg->s;
	struct buf *b = pg->b;

	buf_puts(b, "<section id=\"that-bai\"><h2>Thông báo gửi thất bại</h2>"
		 "<table><thead><tr><th>Thời điểm</th><th>Tình trạng</th>"
		 "<th>Kỳ báo cáo</th><th>Đơn vị</th><th>Bước</th><th>Kênh"
		 "</th><th>Địa chỉ</th><th>Lỗi</th></tr></thead><tbody>\n");
	for (size_t i = 0; i < s->nfail; i++) {
		const struct st_fail *x = &s->fail[i];
		char t[20];

		tz_format_vn(c->tz, x->at, t);
		buf_printf(b, "<tr><td>%s</td><td>%s</td><td>", t,
			   x->retrying ? "&#8635; Đang thử lại" :
			   "&#10007; Thất bại");
		html_esc(b, x->occ);
		buf_puts(b, "</td><td>");
		put_fail_unit(pg, x);
		buf_puts(b, " <span class=\"muted\">");
		html_esc(b, x->unit);
		buf_puts(b, "</span></td><td>");
		html_esc(b, x->step);
		buf_printf(b, " (%s)</td><td>", aud_vn(x->aud));
		html_esc(b, x->ch);
		buf_puts(b, "</td><td>");
		put_fail_addr(pg, x);
		buf_puts(b, "</td><td>");
		html_esc(b, x->err);
		buf_puts(b, "</td></tr>\n");
	}
	buf_puts(b, "</tbody></table></section>\n");
}

static void
page_render(struct page *pg, const char *token, const char *notice)
{
	const struct conf *c = pg->a->conf;
	const struct status *s = pg->s;
	struct buf *b = pg->b;
	char now[20];
	struct ymd today;
	int minute;
	size_t *ord;

	tz_local(c->tz, s->now, &today, &minute, NULL);
	pg->today = days_from_civil(today.y, today.m, today.d);
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
	if (s->nfail > 0 || s->nref > 0)
		page_fail_summary(pg);
	page_filters(pg, token);

	ord = page_order(s);
	if (s->nocc == 0) {
		buf_puts(b, "<p>Không có kỳ báo cáo nào trong khoảng thời gian "
			 "này.</p>\n");
	} else {
		/* overview, in the order of the sections below */
		buf_puts(b, "<table id=\"tong-hop\"><thead><tr><th>Kỳ báo cáo"
			 "</th><th>Hạn nộp</th><th>Thời hạn</th><th>Đã nộp</th>"
			 "<th>Đúng hạn</th><th>Nộp muộn</th><th>Chưa nộp</th>"
			 "<th>Chưa đến hạn</th></tr></thead><tbody>\n");
		for (size_t k = 0; k < s->nocc; k++) {
			const struct st_occ *so = &s->occ[ord[k]];
			char due[32];

			status_fmt_due(&so->o, due, sizeof(due));
			buf_puts(b, "<tr><td><a href=\"#");
			put_anchor(b, so->o.id);
			buf_puts(b, "\">");
			put_label(b, pg->a->conf, &so->o);
			buf_printf(b, "</a></td><td>%s%s</td><td>", due,
				   so->o.extended ? " <span class=\"st ext\">"
				   "(gia hạn)</span>" : "");
			put_days(pg, so->o.due_at, so->o.due);
			buf_printf(b, "</td><td class=\"n\">"
				   "%zu/%zu</td><td class=\"n\">%zu</td>"
				   "<td class=\"n\">%zu</td><td class=\"n%s\">"
				   "%zu</td><td class=\"n\">%zu</td></tr>\n",
				   so->nsub, so->nu, so->nsub - so->nlate,
				   so->nlate, so->nmiss > 0 ? " miss" : "",
				   so->nmiss, so->nnotdue);
		}
		buf_puts(b, "</tbody></table>\n");
		for (size_t k = 0; k < s->nocc; k++)
			page_section(pg, &s->occ[ord[k]]);
	}
	free(ord);

	if (s->nfail > 0)
		page_fail_table(pg);
	if (s->nref > 0) {
		/* one address refused; the unit's others got the mail */
		buf_puts(b, "<section id=\"tu-choi\"><h2>Địa chỉ thư bị máy chủ từ chối</h2>"
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

/* 303 back to the view the form came from, at the occurrence's section;
 * the ids are checked against the configuration, so safe in a URL */
static void
redirect_back(struct app *a, const struct form *fm, const char *occ,
	      struct http_resp *r)
{
	const struct conf *c = a->conf;
	const char *cy = form_get(fm, "cycle"), *g = form_get(fm, "group");
	struct status_filter f;
	struct buf loc;

	buf_init(&loc);
	buf_puts(&loc, "/");
	if (cy != NULL && conf_cycle(c, cy) != NULL)
		buf_printf(&loc, "?cycle=%s", cy);
	if (g != NULL && status_filter_set(c, NULL, g, &f) == NULL)
		buf_printf(&loc, "%sgroup=%s", loc.len > 1 ? "&" : "?", g);
	if (occ != NULL) {
		buf_puts(&loc, "#");
		put_anchor(&loc, occ);
	}
	resp_redirect(r, buf_str(&loc));
	buf_free(&loc);
}

/* The form's occurrence and (optional unless need_unit) unit, checked as
 * the API checks them; -1 with a 400 page in r. */
static int
form_target(struct app *a, const struct form *fm, bool need_unit,
	    struct occ *o, const struct unit **u, struct http_resp *r)
{
	const struct conf *c = a->conf;
	const char *occ = form_get(fm, "occurrence");
	const char *unit = form_get(fm, "unit");

	*u = unit != NULL ? conf_unit(c, unit) : NULL;
	if (occ == NULL || strlen(occ) >= OCC_ID_MAX ||
	    sched_occurrence(c, occ, o) < 0 || (unit != NULL && *u == NULL) ||
	    (need_unit && *u == NULL)) {
		resp_html_msg(r, 400, "Không có kỳ báo cáo hoặc đơn vị này.");
		return -1;
	}
	/* as the API: a unit that does not owe this report has none */
	if (*u != NULL && !conf_cycle_has(o->cycle, (size_t)(*u - c->units))) {
		resp_html_msg(r, 400, "Đơn vị này không nộp báo cáo kỳ này.");
		return -1;
	}
	return 0;
}

/* a write that failed: busy (another process holds the lock; not waited
 * for, see api.c) or broken */
static void
store_failed(struct app *a, struct http_resp *r)
{
	if (db_busy(a->db)) {
		resp_html_msg(r, 503, "Dữ liệu đang bận, xin thử lại sau.");
		resp_hdr(r, "Retry-After", "1");
	} else {
		resp_html_msg(r, 500, "Không ghi được dữ liệu.");
	}
}

static void
changed(struct app *a)
{
	if (a->changed != NULL)
		a->changed(a);
}

void
page_mark(struct app *a, const struct http_req *q, struct http_resp *r)
{
	struct form fm;
	struct occ o;
	const struct unit *u;
	tstamp now = clock_now(&a->clk);
	int rc;

	if (req_form(q, r, &fm) < 0)
		return;
	if (auth_form(a, q, &fm, now, r) < 0 ||
	    form_target(a, &fm, true, &o, &u, r) < 0)
		goto out;
	rc = ledger_receive(a->db, o.id, u->id, now,
			    form_get(&fm, "nil") != NULL, "page",
			    auth_actor(a, q, now), NULL, now);
	if (rc < 0) {
		store_failed(a, r);
		goto out;
	}
	if (rc == 0) {
		log_info("received %s %s (status page)", o.id, u->id);
		changed(a);
	}
	redirect_back(a, &fm, o.id, r);
out:
	form_free(&fm);
}

void
page_undo(struct app *a, const struct http_req *q, struct http_resp *r)
{
	struct form fm;
	struct occ o;
	const struct unit *u;
	tstamp now = clock_now(&a->clk);
	int rc;

	if (req_form(q, r, &fm) < 0)
		return;
	if (auth_form(a, q, &fm, now, r) < 0 ||
	    form_target(a, &fm, true, &o, &u, r) < 0)
		goto out;
	rc = ledger_undo(a->db, o.id, u->id, "page", auth_actor(a, q, now),
			 now);
	if (rc < 0) {
		store_failed(a, r);
		goto out;
	}
	/* nothing recorded (a second click, another admin was first): the
	 * page shows the state as it is */
	if (rc == 0) {
		log_info("undo %s %s (status page)", o.id, u->id);
		changed(a);
	}
	redirect_back(a, &fm, o.id, r);
out:
	form_free(&fm);
}

void
page_extend(struct app *a, const struct http_req *q, struct http_resp *r)
{
	struct form fm;
	struct occ o;
	const struct unit *u;
	const char *due_s, *note, *why;
	tstamp now = clock_now(&a->clk);
	struct ymd due;
	int minute, rc;

	if (req_form(q, r, &fm) < 0)
		return;
	if (auth_form(a, q, &fm, now, r) < 0 ||
	    form_target(a, &fm, false, &o, &u, r) < 0)
		goto out;
	if (form_get(&fm, "cancel") != NULL) {
		rc = ledger_unextend(a->db, o.id, u != NULL ? u->id : NULL,
				     "page", auth_actor(a, q, now), now);
		if (rc < 0) {
			store_failed(a, r);
			goto out;
		}
		if (rc == 0) {
			log_info("extension of %s%s%s cancelled (status page)",
				 o.id, u ? " for " : "", u ? u->id : "");
			changed(a);
		}
		redirect_back(a, &fm, o.id, r);
		goto out;
	}
	due_s = form_get(&fm, "due");
	if (due_s == NULL || ledger_parse_due(due_s, &due, &minute) < 0) {
		resp_html_msg(r, 400, "Ngày gia hạn không hợp lệ (cần dạng "
			      "năm-tháng-ngày).");
		goto out;
	}
	if (ledger_extension_problem(&o, due) != NULL) {
		resp_html_msg(r, 400, "Ngày gia hạn phải sau hạn theo kế hoạch "
			      "và trong vòng một năm.");
		goto out;
	}
	note = form_get(&fm, "note");
	if (note != NULL && (why = note_problem(note, strlen(note))) != NULL) {
		resp_html_msg(r, 400, "Ghi chú không hợp lệ (quá dài hoặc có "
			      "ký tự điều khiển).");
		goto out;
	}
	rc = ledger_extend(a->db, o.id, u != NULL ? u->id : NULL, due, minute,
			   "page", auth_actor(a, q, now), note, now);
	if (rc < 0) {
		store_failed(a, r);
		goto out;
	}
	/* the id and a checked date: safe in the log */
	log_info("extended %s%s%s until %s (status page)", o.id,
		 u ? " for " : "", u ? u->id : "", due_s);
	changed(a);
	redirect_back(a, &fm, o.id, r);
out:
	form_free(&fm);
}

void
page_proposal(struct app *a, const struct http_req *q, struct http_resp *r)
{
	struct form fm;
	struct occ o;
	const struct unit *u;
	const char *what;
	tstamp now = clock_now(&a->clk);
	bool confirm;
	int rc;

	if (req_form(q, r, &fm) < 0)
		return;
	if (auth_form(a, q, &fm, now, r) < 0 ||
	    form_target(a, &fm, true, &o, &u, r) < 0)
		goto out;
	what = form_get(&fm, "do");
	if (what == NULL || (strcmp(what, "confirm") != 0 &&
			     strcmp(what, "reject") != 0)) {
		resp_html_msg(r, 400, "Cần chọn xác nhận hoặc bác bỏ.");
		goto out;
	}
	confirm = what[0] == 'c';
	rc = confirm ? ledger_confirm(a->db, o.id, u->id, "page",
				      auth_actor(a, q, now), now)
		     : ledger_reject(a->db, o.id, u->id, "page",
				     auth_actor(a, q, now), NULL, now);
	if (rc < 0) {
		store_failed(a, r);
		goto out;
	}
	/* none open (a second click, another admin was first): the page
	 * shows the state as it is */
	if (rc == 0) {
		log_info("proposal of %s %s %s (status page)", o.id, u->id,
			 confirm ? "confirmed" : "rejected");
		changed(a);
	}
	redirect_back(a, &fm, o.id, r);
out:
	form_free(&fm);
}
