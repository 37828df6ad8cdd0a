"""Citations are checked before they are shown (pure logic: no engine)."""

from app.services.citations import Cited, best_sentence, check_answer, found_in

PASSAGES = [
    "The bridge over the Wey opened to traffic in 1871. It cost the town 4,000 pounds.",
    "Harlow's library opens on Sundays from 2026.\nThe reading room seats forty people.",
]


def test_a_quote_found_verbatim_is_kept_spaces_normalized():
    answer = 'The bridge opened in 1871 [1] "opened  to traffic\nin 1871".'
    checked = check_answer(answer, PASSAGES, "When did the bridge open?")
    assert checked.cited == [Cited(1, "opened to traffic in 1871", True)]
    assert checked.text == answer


def test_an_invented_quote_is_never_shown_the_passage_sentence_is():
    answer = 'The library opens every Monday [2] "open every Monday since 1990". It seats forty [2].'
    checked = check_answer(answer, PASSAGES, "When does the library open?")
    assert all("Monday since 1990" not in c.quote for c in checked.cited)
    assert "Monday since 1990" not in checked.text, "the invented quote is taken out of the answer"
    assert checked.text.startswith("The library opens every Monday [2]. It seats forty [2].")
    assert checked.cited[0] == Cited(2, "Harlow's library opens on Sundays from 2026.", False)
    assert all(c.verified is False for c in checked.cited)


def test_a_quote_before_the_number_and_numbers_out_of_range():
    checked = check_answer('“It cost the town 4,000 pounds” [1], see also [7] and [0].', PASSAGES)
    assert checked.cited == [Cited(1, "It cost the town 4,000 pounds", True)]


def test_a_quote_from_another_passage_does_not_count_for_this_one():
    checked = check_answer('The room seats forty [1] "The reading room seats forty people".', PASSAGES,
                           "How many seats?")
    assert checked.cited == [Cited(1, "The bridge over the Wey opened to traffic in 1871.", False)], \
        "found in passage 2, not in the cited passage 1"


def test_short_quotes_prove_nothing_and_sentences_are_picked_by_shared_words():
    assert not found_in("1871", PASSAGES[0]) and found_in("opened to traffic", PASSAGES[0])
    assert best_sentence(PASSAGES[1], "how many people fit in the reading room") == "The reading room seats forty people."
    assert best_sentence("- first item\n- second item about zebras", "zebras") == "second item about zebras"
