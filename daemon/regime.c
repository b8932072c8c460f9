/*
 * regime.c - what a configuration takes from the state store, and what a
 * reload of it moves (README "Moved due dates"): one implementation for
 * the daemon's start and reload, `cutoffd --check` and `cutoffctl check`,
 * so that a check says exactly what the reload will do.
 */
#include <stdio.h>
#include <stdlib.h>

#include "cutoffd.h"

/* Vanishing occurrences named one by one in the log and by a check. */
#define VANISH_SHOWN 20

/* What a configuration takes from the state store: the default since
 * (recorded on the first start) and the ids moved by earlier reloads. */
void
regime_apply_state(struct db *db, struct conf *c, tstamp now, bool record)
{
	struct occ_alias *al = NULL;
	struct ymd today;
	int64_t since = INT64_MIN, day;
	size_t nal = 0;

	tz_local(c->tz, now, &today, NULL, NULL);
	day = days_from_civil(today.y, today.m, today.d);
	if (db != NULL && db_first_day(db, day, record, &since) < 0)
		since = INT64_MIN;
	if (db != NULL && db_aliases(db, &al, &nal) < 0)
		nal = 0;
	conf_apply_state(c, since, day, al, nal);
	db_aliases_free(al, nal);
}

/*
 * Moved due dates (README "Moved due dates"): every occurrence with
 * recorded state that c no longer has either moves - its state goes to the
 * new occurrence and the old id resolves to it - or vanishes, its state
 * kept under the old id.  Each is reported (log, or out for --check);
 * only apply touches the store.  old, when given, limits the vanishing
 * reports to ids it had (a reload does not repeat old news).
 */
void
regime_moves(struct db *db, struct conf *c, const struct conf *old,
	     tstamp now, bool apply, FILE *out)
{
	struct occ_move *mv = NULL;
	char **ids = NULL;
	size_t nids = 0, nmv = 0, nvan = 0, quiet = 0;
	struct occ probe;

	if (db_state_ids(db, &ids, &nids) < 0)
		return;
	sched_moves(c, ids, nids, &mv, &nmv);
	for (size_t i = 0; i < nmv; i++) {
		int64_t subs = 0, sent = 0;

		if (mv[i].to[0] == '\0' && old != NULL &&
		    sched_occurrence(old, mv[i].from, &probe) < 0)
			continue;
		db_state_count(db, mv[i].from, &subs, &sent);
		if (mv[i].to[0] != '\0') {
			if (out != NULL)
				fprintf(out, "%s moves to %s: %lld submissions "
					"and %lld sent notices go with it\n",
					mv[i].from, mv[i].to, (long long)subs,
					(long long)sent);
			else
				log_info("%s moves to %s: %lld submissions and "
					 "%lld sent notices go with it",
					 mv[i].from, mv[i].to, (long long)subs,
					 (long long)sent);
			if (apply && db_occ_move(db, mv[i].from, mv[i].to,
						 now) < 0)
				log_err("%s: could not move its state to %s",
					mv[i].from, mv[i].to);
		} else if (++nvan > VANISH_SHOWN) {
			quiet++;        /* old news of a removed cycle, say */
		} else if (out != NULL) {
			fprintf(out, "%s vanishes with recorded state (%lld "
				"submissions, %lld sent notices, kept): %s\n",
				mv[i].from, (long long)subs, (long long)sent,
				mv[i].why);
		} else {
			log_warn("%s vanishes with recorded state (%lld "
				 "submissions, %lld sent notices, kept): %s",
				 mv[i].from, (long long)subs, (long long)sent,
				 mv[i].why);
		}
	}
	if (quiet > 0 && out != NULL)
		fprintf(out, "%zu more occurrences vanish with recorded state "
			"(kept)\n", quiet);
	else if (quiet > 0)
		log_warn("%zu more occurrences vanish with recorded state (kept)",
			 quiet);
	free(mv);
	free_list(ids, nids);
}
