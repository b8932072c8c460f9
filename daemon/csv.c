/*
 * csv.c - the status as a spreadsheet: /status.csv and `cutoffctl status
 * --csv`, one row per (occurrence, unit) of the status model.
 *
 * Written for Excel and LibreOffice as they open a file "as is": UTF-8
 * with a byte order mark (without it Excel reads Vietnamese as cp1252),
 * CRLF line ends and RFC 4180 quoting.  Dates are dd/mm/yyyy as people
 * read them.  A text field that starts like a formula (= + - @, tab, CR)
 * gets a leading apostrophe, so a unit name or a note can never run as
 * one in a spreadsheet (CSV injection).
 */
#include "cutoffd.h"

#include <string.h>

static const char *const header[] = {
	"occurrence", "title", "due", "unit", "unit_name", "state",
	"received_at", "source", "note", "late", NULL,
};

/* One field: quoted when it holds a comma, a quote, CR or LF (RFC 4180),
 * quotes doubled; `text` fields are guarded against formulas. */
static void
field(struct buf *b, const char *s, bool text, bool first)
{
	bool quote;

	if (!first)
		buf_putc(b, ',');
	if (s == NULL)
		return;
	quote = strpbrk(s, ",\"\r\n") != NULL;
	if (quote)
		buf_putc(b, '"');
	if (text && strchr("=+-@\t\r", s[0]) != NULL && s[0] != '\0')
		buf_putc(b, '\'');
	for (; *s != '\0'; s++) {
		if (*s == '"')
			buf_putc(b, '"');
		buf_putc(b, *s);
	}
	if (quote)
		buf_putc(b, '"');
}

void
status_csv_write(const struct conf *c, const struct status *s, struct buf *b)
{
	buf_puts(b, "\xef\xbb\xbf");
	for (size_t i = 0; header[i] != NULL; i++)
		field(b, header[i], false, i == 0);
	buf_puts(b, "\r\n");
	for (size_t i = 0; i < s->nocc; i++) {
		const struct st_occ *so = &s->occ[i];
		const char *title = so->o.cycle->title ? so->o.cycle->title
						       : so->o.cycle->id;

		for (size_t j = 0; j < so->nu; j++) {
			const struct st_unit *su = &so->u[j];
			bool rec = su->state == US_SUBMITTED ||
				   su->state == US_NIL;
			char due[16], at[20];
			const char *note = NULL;

			/* the unit's own due date: extended where extended */
			ymd_format_vn(su->due, due);
			if (rec)
				tz_format_vn(c->tz, su->at, at);
			/* a note that isn't UTF-8 (written by hand into the
			 * store) would break the whole file for Excel */
			if (rec && su->note != NULL &&
			    utf8_valid(su->note, strlen(su->note)))
				note = su->note;
			field(b, so->o.id, false, true);
			field(b, title, true, false);
			field(b, due, false, false);
			field(b, su->u->id, false, false);
			field(b, su->u->name ? su->u->name : su->u->id, true,
			      false);
			field(b, status_state_name(su->state), false, false);
			field(b, rec ? at : NULL, false, false);
			field(b, rec ? su->source : NULL, false, false);
			field(b, note, true, false);
			field(b, rec && su->late ? "late" : NULL, false,
			      false);
			buf_puts(b, "\r\n");
		}
	}
}

int
status_print_csv(const struct conf *c, struct db *db, tstamp now,
		 const char *occ, FILE *out)
{
	struct status_filter f = { .occ = occ };
	struct status *s = NULL;
	struct buf b;
	int rc;

	rc = status_build(c, db, now, &f, &s);
	if (rc != 0)
		return rc;
	buf_init(&b);
	status_csv_write(c, s, &b);
	fwrite(b.p ? b.p : "", 1, b.len, out);
	buf_free(&b);
	status_free(s);
	return 0;
}
