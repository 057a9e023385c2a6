"""Model backends behind one interface (:class:`~.base.Scorer`): tfidf, embeddings, hybrid."""
