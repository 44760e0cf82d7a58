"""Brazilian names, contact data and casino games the demo operator is made of."""

from __future__ import annotations

# fmt: off
# The most common given names in Brazil (IBGE), women and men.
FIRST_NAMES: tuple[str, ...] = (
    "Maria", "Ana", "Francisca", "Antônia", "Adriana", "Juliana", "Márcia", "Fernanda",
    "Patrícia", "Aline", "Sandra", "Camila", "Amanda", "Bruna", "Jéssica", "Letícia", "Júlia",
    "Luciana", "Vanessa", "Mariana", "Gabriela", "Vitória", "Larissa", "Beatriz", "Rafaela",
    "Carolina", "Raquel", "Isabela", "Manuela", "Sofia", "Helena", "Alice", "Laura",
    "Valentina", "Luana", "Débora", "Tatiane", "Priscila", "Renata", "Cláudia", "José", "João",
    "Antônio", "Francisco", "Carlos", "Paulo", "Pedro", "Lucas", "Luiz", "Marcos", "Luís",
    "Gabriel", "Rafael", "Daniel", "Marcelo", "Bruno", "Eduardo", "Felipe", "Raimundo",
    "Rodrigo", "Manoel", "Mateus", "André", "Fernando", "Fábio", "Leonardo", "Gustavo",
    "Guilherme", "Leandro", "Tiago", "Anderson", "Ricardo", "Márcio", "Jorge", "Sebastião",
    "Alexandre", "Roberto", "Diego", "Thiago", "Vinícius", "Enzo", "Miguel", "Arthur", "Heitor",
    "Davi", "Bernardo", "Samuel", "Caio", "Igor",
)
SECOND_NAMES: tuple[str, ...] = (
    "Eduarda", "Clara", "Luiza", "Fernanda", "Vitória", "Júlia", "Cecília", "Paula", "Henrique",
    "Carlos", "Pedro", "Gabriel", "Miguel", "Lucas", "Victor", "Augusto",
)
SURNAMES: tuple[str, ...] = (
    "Silva", "Santos", "Oliveira", "Souza", "Rodrigues", "Ferreira", "Alves", "Pereira", "Lima",
    "Gomes", "Costa", "Ribeiro", "Martins", "Carvalho", "Almeida", "Lopes", "Soares",
    "Fernandes", "Vieira", "Barbosa", "Rocha", "Dias", "Nascimento", "Andrade", "Moreira",
    "Nunes", "Marques", "Machado", "Mendes", "Freitas", "Cardoso", "Ramos", "Gonçalves",
    "Santana", "Teixeira", "Araújo", "Cavalcanti", "Monteiro", "Moura", "Batista", "Correia",
    "Pinto", "Campos", "Farias", "Cunha", "Melo", "Barros", "Reis", "Nogueira", "Azevedo",
    "Castro", "Brito", "Sales", "Bezerra", "Xavier", "Leite", "Pires", "Tavares", "Medeiros",
    "Aguiar",
)
# Repeated entries weigh the popular providers.
EMAIL_DOMAINS: tuple[str, ...] = (
    "gmail.com", "gmail.com", "gmail.com", "gmail.com", "gmail.com", "gmail.com", "hotmail.com",
    "hotmail.com", "outlook.com", "yahoo.com.br", "icloud.com", "uol.com.br", "bol.com.br",
    "terra.com.br",
)
AREA_CODES: tuple[int, ...] = (
    11, 11, 11, 11, 11, 21, 21, 21, 31, 31, 41, 51, 61, 71, 81, 85, 19, 12, 13, 15, 16, 17, 27,
    47, 48, 62, 92, 91, 98, 84, 83, 82, 79, 65, 67, 86, 96, 95, 69, 63, 68,
)
# Ordered by popularity: sessions pick early names far more often.
GAMES: tuple[str, ...] = (
    "Fortune Tiger", "Aviator", "Fortune Ox", "Mines", "Gates of Olympus", "Sweet Bonanza",
    "Fortune Rabbit", "Spaceman", "Roleta Brasileira", "Fortune Mouse", "Big Bass Bonanza",
    "Sugar Rush", "Crazy Time", "Bac Bo", "Wild Bandito", "Football Studio", "Plinko", "JetX",
    "The Dog House", "Lightning Roulette", "Blackjack Brasileiro", "Fortune Dragon",
    "Mega Roulette", "Double Fortune",
)
# Bet sizes a casino offers; a player sits around one of them.
STAKES: tuple[str, ...] = (
    "0.50", "1.00", "1.50", "2.00", "2.50", "3.00", "4.00", "5.00", "6.00", "8.00", "10.00",
    "12.00", "15.00", "20.00", "25.00", "30.00", "40.00", "50.00", "75.00", "100.00", "150.00",
    "200.00", "250.00", "300.00", "400.00", "500.00",
)
# PIX deposit amounts people type; a player sits around one of them.
DEPOSITS: tuple[str, ...] = (
    "10.00", "20.00", "20.00", "25.00", "30.00", "50.00", "50.00", "100.00", "100.00", "150.00",
    "200.00", "250.00", "300.00", "500.00", "500.00", "1000.00", "1500.00", "2000.00",
    "3000.00", "5000.00", "10000.00", "20000.00", "50000.00",
)
# fmt: on


def sql_text_array(values: tuple[str, ...]) -> str:
    """`values` as an SQL text[] literal expression."""
    quoted = ", ".join("'" + v.replace("'", "''") + "'" for v in values)
    return f"ARRAY[{quoted}]::text[]"


def sql_numeric_array(values: tuple[str, ...] | tuple[int, ...]) -> str:
    """`values` as an SQL numeric[] literal expression."""
    return "ARRAY[" + ", ".join(str(v) for v in values) + "]::numeric[]"
